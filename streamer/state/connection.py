"""One Redis URL -> one redis-py asyncio client, for the worker, the API and the tools.

Schemes:

* ``redis://`` / ``rediss://`` (TLS): one server, redis-py's own URL parsing.
* ``redis+cluster://`` / ``rediss+cluster://``: a Redis Cluster, seeded from that node.
* ``redis+sentinel://`` / ``rediss+sentinel://``: a primary found through Sentinel,
  ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?options]``.
  The client asks the Sentinels for the current primary on every new connection, and a
  connection to a primary that became a replica fails (``READONLY``) instead of writing
  there, so after a failover the next retry reaches the promoted replica by itself.
  The credentials are the Redis servers'; Sentinels with a password of their own take
  ``sentinel_password`` (and ``sentinel_username``) in the query. ``rediss`` means TLS to
  the servers and to the Sentinels. Other query options (``socket_timeout``, ...) are
  passed to the server connections as redis-py's URL options are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel

Redis = aioredis.Redis | RedisCluster

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class RedisUrlError(ValueError):
    """A Redis URL this module cannot turn into a client (says which part is wrong)."""


def connect(url: str, *, decode_responses: bool = False, **options: Any) -> Redis:
    """A client for any of the module's URL schemes; ``options`` go to redis-py.

    Connections to one server or a Sentinel-found primary are checked with a PING when
    idle for 10 s (``health_check_interval``), so a connection that a failover or a
    restart broke fails before a command is sent on it rather than after.
    """
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()  # schemes are case-insensitive (the settings accept any case)
    if scheme in CLUSTER_SCHEMES:
        return RedisCluster.from_url(scheme.replace("+cluster", "") + "://" + rest,
                                     decode_responses=decode_responses, **options)
    options.setdefault("health_check_interval", 10)
    if scheme in SENTINEL_SCHEMES:
        return sentinel_primary(url, decode_responses=decode_responses, **options)
    return aioredis.from_url(url, decode_responses=decode_responses, **options)


def sentinel_primary(url: str, **options: Any) -> aioredis.Redis:
    """The current primary of a Sentinel-monitored service, followed across failovers."""
    parts = urlsplit(url)
    sentinels = _sentinel_addresses(parts.netloc.rpartition("@")[2], url)
    path = [piece for piece in parts.path.split("/") if piece]
    if not path or len(path) > 2:
        raise RedisUrlError(f"{_redacted(url)}: expected /<service name>[/<db>] after the "
                            "Sentinel addresses")
    service = unquote(path[0])
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    sentinel_auth = {key: query.pop(key) for key in ("sentinel_username", "sentinel_password")
                     if key in query}
    # Everything else as redis-py would read it from a plain URL to one server.
    server_url = parts._replace(
        scheme="rediss" if parts.scheme.lower().startswith("rediss") else "redis",
        netloc=(parts.netloc.rpartition("@")[0] + "@" if "@" in parts.netloc else "")
        + "localhost",
        path="/" + (path[1] if len(path) == 2 else "0"),
        query="&".join(f"{key}={value}" for key, value in query.items()),
    ).geturl()
    server_kwargs: dict[str, Any] = dict(parse_url(server_url))
    tls = server_kwargs.pop("connection_class", None)
    for key in ("host", "port", "path"):
        server_kwargs.pop(key, None)
    server_kwargs.update(options)
    sentinel_kwargs: dict[str, Any] = {
        key.removeprefix("sentinel_"): value for key, value in sentinel_auth.items()}
    if tls is not None:
        sentinel_kwargs["ssl"] = True
        server_kwargs["ssl"] = True
    for key in ("socket_timeout", "socket_connect_timeout"):
        if key in server_kwargs:
            sentinel_kwargs.setdefault(key, server_kwargs[key])
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    primary: aioredis.Redis = sentinel.master_for(service, **server_kwargs)
    return primary


def _sentinel_addresses(hosts: str, url: str) -> list[tuple[str, int]]:
    addresses = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise RedisUrlError(f"{_redacted(url)}: Sentinel address {item!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def describe(url: str) -> str:
    """Where a URL points, for log lines: its host(s) and port(s), never the password
    (a Sentinel URL lists several hosts, which ``urlsplit(url).port`` cannot read)."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() in SENTINEL_SCHEMES:
        service = next((piece for piece in parts.path.split("/") if piece), "?")
        return f"Sentinels {hosts}, service {unquote(service)}"
    if parts.scheme.lower() == "unix":
        return parts.path
    return hosts if ":" in hosts.rpartition("]")[2] else f"{hosts}:6379"


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}").geturl()
