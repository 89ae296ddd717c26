"""RedisStore.put_catalog without Redis: which keys get which values and TTL.

The script itself (one SET ... PX per key) runs against Redis in the integration
tests; here a fake client runs its Lua semantics in Python, to check the chunking
and that each key is paired with its own value.
"""

from __future__ import annotations

import asyncio
from typing import Any

from streamer.state.keys import KeyLayout
from streamer.state.store import _PUT_CATALOG, RedisStore


class _Script:
    def __init__(self, client: _FakeRedis, source: str) -> None:
        self.client = client
        self.source = source

    async def __call__(self, keys: list[str], args: list[Any]) -> int:
        assert self.source == _PUT_CATALOG
        assert "for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], " \
               "'PX', ARGV[1]) end" in self.source
        self.client.calls += 1
        ttl = args[0]
        for i, key in enumerate(keys):  # Lua: KEYS[i] gets ARGV[i + 1], 1-based
            self.client.data[key] = (args[i + 1], ttl)
        return len(keys)


class _FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.calls = 0

    def register_script(self, source: str) -> _Script:
        return _Script(self, source)


def test_put_catalog_writes_every_entry_with_its_value_and_ttl() -> None:
    client = _FakeRedis()
    layout = KeyLayout("t")
    store = RedisStore(client, layout)  # type: ignore[arg-type]
    entries = {f"trk{i}": f'{{"g":"g{i}"}}'.encode() for i in range(2_345)}
    asyncio.run(store.put_catalog(entries, 86_400_000))
    assert client.data == {layout.catalog(track): (value, 86_400_000)
                           for track, value in entries.items()}
    assert client.calls == 3  # chunks of 1,000 entries


def test_put_catalog_of_nothing_calls_nothing() -> None:
    client = _FakeRedis()
    asyncio.run(RedisStore(client, KeyLayout("t")).put_catalog({}, 1))  # type: ignore[arg-type]
    assert client.calls == 0
