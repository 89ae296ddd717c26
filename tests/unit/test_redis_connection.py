"""URL -> client (streamer/state/connection.py): every scheme, Sentinel URLs in detail.

Pure parsing: no server is contacted (redis-py connects lazily); the failover itself is
proven against real Sentinels in tests/faults/test_redis_failover.py.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from streamer.state.connection import RedisUrlError, connect, describe

SECRET = "s3cr:et/pw"  # characters that need quoting in a URL
QUOTED = "s3cr%3Aet%2Fpw"


def test_plain_url_keeps_redis_py_parsing_and_health_checks() -> None:
    client = connect("redis://127.0.0.1:6390/2")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 2)
    assert kwargs["health_check_interval"] == 10
    assert client.connection_pool.connection_class is not SSLConnection


@pytest.mark.parametrize("url", ["redis+cluster://127.0.0.1:7001/0",
                                 "REDIS+Cluster://127.0.0.1:7001/0"])
def test_cluster_url_gives_a_cluster_client(url: str) -> None:
    assert isinstance(connect(url), RedisCluster)


def test_scheme_case_does_not_matter_for_sentinel() -> None:
    pool = connect("REDIS+SENTINEL://s1:26379,s2:26379/main/0").connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "main"


def test_sentinel_url_lists_every_sentinel_and_the_service() -> None:
    client = connect(f"redis+sentinel://app:{QUOTED}@10.0.0.1:26379,10.0.0.2:26380,"
                     "[::1]:26381/mymaster/3?socket_timeout=2.5")
    assert isinstance(client, Redis)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_class is SentinelManagedConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", SECRET, 3)
    assert kwargs["socket_timeout"] == 2.5
    assert kwargs["health_check_interval"] == 10
    sentinels = pool.sentinel_manager.sentinels
    addresses = [(s.connection_pool.connection_kwargs["host"],
                  s.connection_pool.connection_kwargs["port"]) for s in sentinels]
    assert addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)]
    # The servers' password is not sent to the Sentinels (they have their own, if any).
    assert all("password" not in s.connection_pool.connection_kwargs or
               s.connection_pool.connection_kwargs["password"] is None for s in sentinels)
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 2.5


def test_sentinel_url_with_sentinel_auth_and_tls() -> None:
    client = connect("rediss+sentinel://:pw@s1:26379/svc"
                     "?sentinel_password=spw&ssl_cert_reqs=none")
    pool = client.connection_pool
    assert pool.connection_class is SentinelManagedSSLConnection
    assert pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["db"] == 0
    sentinel = pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["password"] == "spw"
    assert sentinel.connection_pool.connection_class is SSLConnection


@pytest.mark.parametrize("url", [
    "redis+sentinel://10.0.0.1:26379",                 # no service
    "redis+sentinel://10.0.0.1:26379/svc/0/extra",     # too many path parts
    f"redis+sentinel://:{QUOTED}@10.0.0.1/svc",        # no port
    "redis+sentinel://10.0.0.1:26379,:26380/svc",      # no host
])
def test_bad_sentinel_urls_name_the_problem_without_the_password(url: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        connect(url)
    assert "redis+sentinel://" in str(info.value)
    assert SECRET not in str(info.value) and QUOTED not in str(info.value)


@pytest.mark.parametrize(("url", "where"), [
    ("redis://:pw@127.0.0.1:6390/0", "127.0.0.1:6390"),
    ("rediss://redis.internal/0", "redis.internal:6379"),
    ("redis+cluster://:pw@10.0.0.1:7001/0", "10.0.0.1:7001"),
    ("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/main/0",
     "Sentinels 10.0.0.1:26379,10.0.0.2:26380, service main"),
])
def test_describe_names_the_hosts_never_the_password(url: str, where: str) -> None:
    assert describe(url) == where
