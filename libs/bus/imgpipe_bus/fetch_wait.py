"""A consumer's fetch wait that follows its traffic: short while messages flow, long once idle.

The embedded broker holds every fetch for the client's whole max wait, even when data is waiting, so the
wait is both the latency of a hop and, when nothing flows, the rate at which every consumer and the broker
wake up (10 ms: ~100 fetches a second per consumer). One fixed value cannot serve both. While fetches bring
records the wait is ``busy_ms``; after ``idle_after_s`` without any it becomes ``idle_ms``, and the first
fetch that brings a record again switches back (faust_internals.install_fetch_wait). The first message after
a quiet spell pays at most ``idle_ms`` once per hop; a stream of messages pays ``busy_ms``.
"""

import time
from collections.abc import Callable


class AdaptiveFetchWait:
    def __init__(
        self, busy_ms: int, idle_ms: int, idle_after_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.busy_ms = busy_ms
        self.idle_ms = max(idle_ms, busy_ms)
        self.idle_after_s = idle_after_s
        self._clock = clock
        self._last_records = clock()

    def observe(self, had_records: bool) -> int:
        """The wait for the next fetch, given whether the last one brought records."""
        now = self._clock()
        if had_records:
            self._last_records = now
            return self.busy_ms
        return self.idle_ms if now - self._last_records >= self.idle_after_s else self.busy_ms
