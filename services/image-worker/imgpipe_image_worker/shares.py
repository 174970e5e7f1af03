"""Fair shares of a worker's fetching: how many fetches one request, and how many connections one host,
may hold at once.

A source that accepts a connection and never answers holds it until the attempt's timeout; a request
with many such sources would otherwise take every connection of the worker, and the next request's
images would wait behind them until their own budgets ran out. So every fetch first takes a slot of its
request (``request_share`` of the worker's connections: another request always finds the rest), and
every HTTP request a slot of its host and one of the worker (the downloader's); the pool of the HTTP
client is sized to match, so it never makes a request wait, and an attempt's timeouts start once it
may connect. The wait for a slot counts against the image's time budget only.

Why it cannot deadlock: slots are always taken in the same order (request, host, worker), and a holder
of the worker's slot waits only for its own HTTP request, which its timeouts bound, and for the memory
budget, whose holders wait for no slot (see budgets). A wait that is cancelled (its image ran out of
time) leaves the queue at once.
"""

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


def request_share(connections: int) -> int:
    """The fetches one request may have in flight: half the worker's connections, so that however many
    of them one request's sources stall, another request still finds the other half."""
    return max(1, connections // 2)


class _Key:
    def __init__(self, slots: int) -> None:
        self.semaphore = asyncio.Semaphore(slots)
        self.users = 0  # holding or waiting
        self.holding = 0


class KeyedSlots:
    """At most ``per_key`` holders per key at once, served in arrival order. A key's queue exists only
    while someone holds or waits for one of its slots, so keys (request ids, hosts) do not pile up."""

    def __init__(self, per_key: int) -> None:
        if per_key < 1:
            raise ValueError("a key needs at least one slot")
        self.per_key = per_key
        self._keys: dict[Hashable, _Key] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key(self.per_key)
        entry.users += 1
        try:
            async with entry.semaphore:
                entry.holding += 1
                try:
                    yield
                finally:
                    entry.holding -= 1
        finally:
            entry.users -= 1
            if not entry.users:
                del self._keys[key]

    def in_use(self, key: Hashable) -> int:
        """How many hold a slot of ``key`` now."""
        entry = self._keys.get(key)
        return 0 if entry is None else entry.holding

    def __len__(self) -> int:
        """How many keys have holders or waiters."""
        return len(self._keys)
