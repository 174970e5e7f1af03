"""The memory budget of one worker process: how many source bytes its downloads may hold at once.

A worker has many images in flight (``IMGPIPE_WORKER_CONCURRENCY`` rows of up to
``IMGPIPE_MAX_URLS_PER_ROW`` images each), and the per-image cap alone lets them hold that many times
``IMGPIPE_MAX_IMAGE_BYTES``. So a download reserves its bytes from one shared ``ByteBudget`` before it
reads a body, and waits while the budget is used up.

Why this design, and why it cannot deadlock:

- A download asks once, for everything it may need: the declared Content-Length, or the per-image cap
  when there is none (or when the body is content-encoded, so that its decoded length is unknown). It
  never holds bytes while it waits for more: reading chunk by chunk and reserving as it goes would let
  every download hold part of the budget while all of them wait for the rest, and none would finish.
  An undeclared body gives back what it did not use once it is read.
- No request is larger than the budget: the settings refuse a budget below the per-image cap, and a
  body declared (or streamed) past the cap is the image's ``too_large`` error before it is reserved
  (or the moment it passes the cap). So every request can be granted once the others give back.
- Requests are granted in arrival order, so a large one is not starved by a stream of small ones; a
  request that is cancelled (its image ran out of time) leaves the queue and lets the next one in.
- The bytes stay reserved until the worker drops the source, after it is compressed, not only while
  it downloads: sources waiting for a codec process are what fills a worker's memory when downloads
  outpace compression, and holding them back then is the point. A holder waits only for the codec
  pool, never for another reservation, so the wait always ends.
"""

import asyncio
from collections import deque


class ByteBudget:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a byte budget needs at least one byte")
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def reserve(self, amount: int) -> "Reservation":
        """``amount`` bytes, once they are free and every earlier request has been granted."""
        if not 0 <= amount <= self.capacity:
            raise ValueError(f"{amount} bytes cannot be reserved from a budget of {self.capacity}")
        if not self._waiting and self.in_use + amount <= self.capacity:
            self._take(amount)
            return Reservation(self, amount)
        entry = (amount, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await entry[1]
        except BaseException:
            if entry[1].done() and not entry[1].cancelled():  # granted just before the cancellation
                self._give_back(amount)
            else:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                self._grant()
            raise
        return Reservation(self, amount)

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self.peak = max(self.peak, self.in_use)

    def _give_back(self, amount: int) -> None:
        self.in_use -= amount
        self._grant()

    def _grant(self) -> None:
        while self._waiting:
            amount, waiter = self._waiting[0]
            if waiter.done():
                self._waiting.popleft()
                continue
            if self.in_use + amount > self.capacity:
                return
            self._waiting.popleft()
            self._take(amount)
            waiter.set_result(None)


class Reservation:
    """Bytes held from a budget until released; releasing twice gives back nothing more."""

    def __init__(self, budget: ByteBudget, amount: int) -> None:
        self._budget = budget
        self.amount = amount

    def shrink(self, amount: int) -> None:
        """Keeps only ``amount`` bytes (no more than held) and gives back the rest."""
        freed = self.amount - max(0, min(amount, self.amount))
        self.amount -= freed
        if freed:
            self._budget._give_back(freed)

    def release(self) -> None:
        self.shrink(0)
