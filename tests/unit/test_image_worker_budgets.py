"""The image worker's budgets with in-memory adapters: the memory budget's queue, and the time budgets of
an image and of a row, whatever the adapters do (hang in a fetch, in a compression, in a store)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import ValidationError

from imgpipe_image_worker.adapters.downloader import FetchFailed
from imgpipe_image_worker.budgets import ByteBudget
from imgpipe_image_worker.compress import Compressed, Listing
from imgpipe_image_worker.handlers import Adapters, process_row, replay_reason
from imgpipe_image_worker.settings import Settings
from imgpipe_image_worker.shares import KeyedSlots
from imgpipe_image_worker.sources import SharedSources
from imgpipe_schemas import ImageOptions, RowSubmitted


async def granted(reservation: asyncio.Task) -> bool:
    """Whether a pending reservation is granted once the loop has run everything that is ready."""
    for _ in range(3):
        await asyncio.sleep(0)
    return reservation.done()


async def test_reservations_wait_while_the_budget_is_used_and_are_granted_in_order():
    budget = ByteBudget(100)
    first = await budget.reserve(60)
    large = asyncio.ensure_future(budget.reserve(80))
    small = asyncio.ensure_future(budget.reserve(10))
    assert not await granted(large)
    assert not await granted(small), "a later small request does not overtake a waiting large one"
    first.release()
    assert await granted(large) and await granted(small)
    assert budget.in_use == 90 and budget.peak == 90
    large.result().release()
    small.result().release()
    small.result().release()  # twice gives back nothing more
    assert budget.in_use == 0


async def test_a_cancelled_request_leaves_the_queue_and_lets_the_next_one_in():
    budget = ByteBudget(100)
    held = await budget.reserve(50)
    blocked = asyncio.ensure_future(budget.reserve(100))
    behind = asyncio.ensure_future(budget.reserve(40))
    assert not await granted(behind)
    blocked.cancel()
    assert await granted(behind)
    assert blocked.cancelled() and budget.in_use == 90
    held.release()
    behind.result().release()
    assert budget.in_use == 0


async def test_a_request_granted_as_it_is_cancelled_gives_its_bytes_back():
    budget = ByteBudget(100)
    held = await budget.reserve(100)
    waiting = asyncio.ensure_future(budget.reserve(100))
    assert not await granted(waiting)
    held.release()  # grants the waiting request ...
    waiting.cancel()  # ... which is cancelled before it resumes
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled() and budget.in_use == 0


async def test_shrinking_gives_back_what_is_not_used():
    budget = ByteBudget(100)
    reservation = await budget.reserve(100)
    waiting = asyncio.ensure_future(budget.reserve(70))
    reservation.shrink(30)
    assert await granted(waiting) and budget.in_use == 100 and reservation.amount == 30


async def test_a_request_larger_than_the_whole_budget_is_refused_rather_than_queued():
    with pytest.raises(ValueError):
        await ByteBudget(100).reserve(101)


def test_the_settings_refuse_a_memory_budget_that_cannot_hold_one_image(monkeypatch):
    monkeypatch.setenv("IMGPIPE_MAX_IMAGE_BYTES", "1000")
    monkeypatch.setenv("IMGPIPE_DOWNLOAD_BYTES_IN_FLIGHT", "999")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert refused.value.errors()[0]["loc"] == ("download_bytes_in_flight",)
    monkeypatch.setenv("IMGPIPE_MAX_IMAGE_BYTES", str(512 * 1024 * 1024))
    monkeypatch.delenv("IMGPIPE_DOWNLOAD_BYTES_IN_FLIGHT")
    with pytest.raises(ValidationError):  # the default budget is checked too
        Settings()


class Hanging:
    """Sources whose fetch, compression or store hangs (until ``finish``) for the URLs named so; the others
    are quick."""

    def __init__(self, store_hangs: bool = False) -> None:
        self.store_hangs = store_hangs
        self._released = asyncio.Event()
        self._hanging: set[asyncio.Task] = set()

    async def _hang(self) -> None:
        self._hanging.add(asyncio.current_task())
        await self._released.wait()

    async def finish(self) -> None:
        """Lets work that outlived its row end, so that no task outlives the test."""
        self._released.set()
        await asyncio.gather(*self._hanging, return_exceptions=True)

    @asynccontextmanager
    async def fetch(self, url: str, deadline: float) -> AsyncIterator[bytes]:
        if "hang-fetch" in url:
            await self._hang()
        if "fails" in url:
            raise FetchFailed("http_404", f"{url} answered HTTP 404", transient=False)
        yield url.encode()

    async def compress(
        self, data: bytes, quality: int, output_format: str, stem: str, options: ImageOptions, listing: Listing
    ) -> Compressed:
        if b"hang-compress" in data:
            await self._hang()
        return Compressed(b"out" if self.store_hangs else None, "jpg", "image/jpeg", 3)

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await self._hang()

    def url(self, name: str) -> None:
        return None


def wired(fake: Hanging, image_budget_s: float, row_budget_s: float, sources: SharedSources | None = None) -> Adapters:
    return Adapters(
        fetch=fake.fetch,
        compress=fake.compress,
        blobs=fake,
        producer=None,
        public_base_url="http://api",
        sources=sources or SharedSources(),
        image_budget_s=image_budget_s,
        row_budget_s=row_budget_s,
        request_fetches=KeyedSlots(50),
    )


def row(urls: list[str], request_id: uuid.UUID | None = None, index: int = 0) -> RowSubmitted:
    return RowSubmitted(
        request_id=request_id or uuid.uuid4(), row_index=index, serial=index + 1, product_name="P", image_urls=urls
    )


async def finished(work):
    """The result of work that the fakes would hang for ever but for a budget: that it comes back at all,
    with the budget's error, is what the tests assert; a hang fails the test instead of stalling it."""
    return await asyncio.wait_for(work, timeout=60)


async def test_an_image_past_its_budget_gets_its_own_error_and_the_others_are_kept():
    urls = ["http://a/ok.jpg", "http://a/hang-fetch.jpg", "http://a/hang-compress.jpg", "http://a/fails.jpg"]
    fake = Hanging()
    result = await finished(process_row(row(urls), wired(fake, image_budget_s=0.3, row_budget_s=30)))
    await fake.finish()
    ok, slow_fetch, slow_compress, failed = result.images
    assert ok.ok and failed.error_code == "http_404"
    assert (slow_fetch.error_code, slow_compress.error_code) == ("time_budget_exceeded", "time_budget_exceeded")
    assert "while fetching" in slow_fetch.error_message and "while compressing" in slow_compress.error_message
    assert slow_compress.bytes_in == len(urls[2])
    assert slow_fetch.retryable and replay_reason(result) is not None


async def test_a_row_past_its_budget_is_reported_with_the_unfinished_images_as_errors():
    urls = ["http://a/x.jpg", "http://a/hang-fetch.jpg", "http://a/y.jpg"]
    fake = Hanging(store_hangs=True)  # every output is stored by the worker, and storing hangs
    result = await finished(process_row(row(urls), wired(fake, image_budget_s=30, row_budget_s=0.3)))
    await fake.finish()
    assert [image.error_code for image in result.images] == ["time_budget_exceeded"] * 3
    assert all("row's time budget of 0.3 s" in image.error_message for image in result.images)


async def test_a_row_waiting_for_a_source_another_row_is_fetching_ends_within_its_own_budget():
    request, sources, fake = uuid.uuid4(), SharedSources(), Hanging()
    first_row = row(["http://a/hang-fetch.jpg"], request, 0)
    first = asyncio.ensure_future(process_row(first_row, wired(fake, 30, 30, sources)))
    second = row(["http://a/ok.jpg", "http://a/hang-fetch.jpg"], request, 1)
    result = await finished(process_row(second, wired(fake, 30, 0.3, sources)))
    assert result.images[0].ok and result.images[1].error_code == "time_budget_exceeded"
    assert not first.done(), "the first row's fetch goes on"
    await fake.finish()
    assert (await first).images[0].ok
