"""The layout version of the state in Redis, checked before a worker touches it.

A worker of one release must not read or write counters laid out by another (key
names, field encodings, Lua scripts): it would count wrongly without a word. The
version lives next to the state, at ``<STREAMER_KEY_PREFIX>:schema_version``; the
first worker on an empty prefix writes it, every worker checks it at start and
refuses an unknown one with a message saying what to do (CHANGELOG.md names the
layout of each release and any migration between them).

Layout 1: the layout of streamer 0.1.0 (docs/ARCHITECTURE.md, state/keys.py). State
written by 0.1.0 has no version key; it is layout 1, so writing 1 there is right.
"""

from __future__ import annotations

from typing import Any

from streamer import __version__

SCHEMA_VERSION = 1


class UnknownSchemaVersion(RuntimeError):
    """Redis holds state of another layout; the message says what to do."""


def schema_version_key(prefix: str) -> str:
    return f"{prefix}:schema_version"


async def check_schema_version(client: Any, prefix: str, where: str) -> int:
    """Record ``SCHEMA_VERSION`` on a prefix without one; raise UnknownSchemaVersion on
    any other version. ``where`` names the Redis in the message (no credentials)."""
    key = schema_version_key(prefix)
    await client.set(key, str(SCHEMA_VERSION), nx=True)
    raw = await client.get(key)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    state = f"Redis at {where} holds streamer state under STREAMER_KEY_PREFIX={prefix!r}"
    if not text.isdigit():
        raise UnknownSchemaVersion(
            f"{state} whose layout version ({key}) is {text[:40]!r}, not a number; if this "
            "prefix is not streamer's, choose another STREAMER_KEY_PREFIX")
    stored = int(text)
    if stored > SCHEMA_VERSION:
        raise UnknownSchemaVersion(
            f"{state} of layout {stored}, newer than streamer {__version__} reads (layout "
            f"{SCHEMA_VERSION}); run the release that wrote it or a later one (CHANGELOG.md), "
            "or point STREAMER_KEY_PREFIX or STREAMER_REDIS_URL at other state")
    if stored < SCHEMA_VERSION:
        raise UnknownSchemaVersion(
            f"{state} of layout {stored}, older than streamer {__version__} uses (layout "
            f"{SCHEMA_VERSION}); migrate it as CHANGELOG.md says for this release, or start "
            "on empty state under a new STREAMER_KEY_PREFIX")
    return stored
