"""One fetch and one compression per distinct source within a request, per worker process.

A catalogue repeats the same photo across rows (one picture for every size of a shirt). The first
position to ask for a source does the work; every other position of the same request, with the same
quality and format, gets the same outcome and the same output URL, so the output CSV still lists the
image wherever it appears. A transient failure is not kept: a later position or a replay tries again.
"""

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from imgpipe_schemas import ImageResult


class SharedSources:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._outcomes: OrderedDict[Hashable, asyncio.Future[ImageResult]] = OrderedDict()

    async def once(self, key: Hashable, make: Callable[[], Awaitable[ImageResult]]) -> ImageResult:
        """``make()``'s result, made once per key. The work runs in a task of its own, so that a caller
        that is cancelled (a row stopped at shutdown) neither cancels it nor hands its cancellation to
        the other callers waiting for the same source."""
        if (known := self._outcomes.get(key)) is not None:
            self._outcomes.move_to_end(key)
            return await asyncio.shield(known)
        work = asyncio.ensure_future(make())
        self._outcomes[key] = work
        while len(self._outcomes) > self._max_entries:
            self._outcomes.popitem(last=False)
        work.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(work)

    def _settled(self, key: Hashable, work: asyncio.Future) -> None:
        """A failure, or a transient one, is not kept: the next place the source appears tries again."""
        if work.cancelled() or work.exception() is not None or work.result().retryable:
            self._forget(key, work)

    def _forget(self, key: Hashable, outcome: asyncio.Future) -> None:
        if self._outcomes.get(key) is outcome:
            del self._outcomes[key]
