"""Each request's fair share of the worker's fetches: a request whose sources hang holds no more than its
share, another request's images are fetched meanwhile, and the wait for a share is inside the image's
time budget."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from imgpipe_image_worker.compress import Compressed, Listing
from imgpipe_image_worker.handlers import Adapters, process_row
from imgpipe_image_worker.shares import KeyedSlots, request_share
from imgpipe_image_worker.sources import SharedSources
from imgpipe_schemas import ImageOptions, RowSubmitted
from tests.support.blob_fakes import CodecWrittenBlobs
from tests.waiting import eventually


def test_a_request_gets_half_the_connections_and_at_least_one():
    assert [request_share(n) for n in (1, 2, 3, 100)] == [1, 1, 1, 50]


async def test_a_key_has_at_most_its_slots_and_other_keys_are_not_held_up():
    slots = KeyedSlots(2)
    release = asyncio.Event()
    order: list[int] = []

    async def hold(key: str, n: int) -> None:
        async with slots.hold(key):
            order.append(n)
            await release.wait()

    busy = [asyncio.ensure_future(hold("a", n)) for n in range(5)]
    await eventually(lambda: slots.in_use("a") == 2, 5, "two slots of a taken")
    async with slots.hold("b"):  # not queued behind a's
        assert slots.in_use("b") == 1
    assert slots.in_use("a") == 2 and order == [0, 1]
    release.set()
    await asyncio.gather(*busy)
    assert order == [0, 1, 2, 3, 4], "served in arrival order"
    assert len(slots) == 0, "an idle key is dropped"


async def test_a_cancelled_wait_leaves_the_queue_and_lets_the_next_one_in():
    slots = KeyedSlots(1)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with slots.hold("a"):
            holding.set()
            await release.wait()

    first = asyncio.ensure_future(hold())
    await holding.wait()
    cancelled = asyncio.ensure_future(hold())
    third = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, third)
    assert cancelled.cancelled() and len(slots) == 0


def test_a_key_needs_a_slot():
    with pytest.raises(ValueError):
        KeyedSlots(0)


class HangingSources:
    """Fetches through a pool of ``connections`` (as the downloader's); sources named "hang" answer only
    once ``answer`` is set."""

    def __init__(self, connections: int) -> None:
        self.pool = asyncio.Semaphore(connections)
        self.hanging = 0
        self.most_hanging = 0
        self.fetched: list[str] = []
        self.answer = asyncio.Event()

    @asynccontextmanager
    async def fetch(self, url: str, deadline: float) -> AsyncIterator[bytes]:
        async with self.pool:
            if "hang" in url:
                self.hanging += 1
                self.most_hanging = max(self.most_hanging, self.hanging)
                try:
                    await self.answer.wait()
                finally:
                    self.hanging -= 1
            self.fetched.append(url)
        yield b"source"

    async def compress(
        self, data: bytes, quality: int, output_format: str, stem: str, options: ImageOptions, listing: Listing
    ) -> Compressed:
        return Compressed(None, "jpg", "image/jpeg", len(data))


def wired(fake: HangingSources, share: int, image_budget_s: float = 30) -> Adapters:
    return Adapters(
        fetch=fake.fetch,
        compress=fake.compress,
        blobs=CodecWrittenBlobs(),
        producer=None,
        public_base_url="http://api",
        sources=SharedSources(),
        image_budget_s=image_budget_s,
        row_budget_s=60,
        request_fetches=KeyedSlots(share),
    )


def row(request_id: uuid.UUID, urls: list[str]) -> RowSubmitted:
    return RowSubmitted(request_id=request_id, row_index=0, serial=1, product_name="P", image_urls=urls)


async def test_a_request_whose_sources_hang_leaves_the_rest_of_the_pool_to_another_request():
    fake = HangingSources(connections=4)
    adapters = wired(fake, share=request_share(4))
    hanging_row = row(uuid.uuid4(), [f"http://a/hang-{n}.jpg" for n in range(10)])
    stalled = asyncio.ensure_future(process_row(hanging_row, adapters))
    await eventually(lambda: fake.hanging >= 2, 5, "request A's fetches hanging")

    other_row = row(uuid.uuid4(), [f"http://b/{n}.jpg" for n in range(5)])
    other = await asyncio.wait_for(process_row(other_row, adapters), 10)

    assert all(image.ok for image in other.images)
    assert not stalled.done() and fake.most_hanging == 2, "request A never held more than its share"
    fake.answer.set()
    assert all(image.ok for image in (await stalled).images)


async def test_an_image_waiting_for_its_requests_share_ends_within_its_time_budget():
    fake = HangingSources(connections=4)
    adapters = wired(fake, share=1, image_budget_s=0.3)
    two = row(uuid.uuid4(), ["http://a/hang.jpg", "http://a/ok.jpg"])
    result = await asyncio.wait_for(process_row(two, adapters), 10)
    hung, queued = result.images
    assert (hung.error_code, queued.error_code) == ("time_budget_exceeded", "time_budget_exceeded")
    assert "while fetching" in queued.error_message and queued.retryable
    assert fake.fetched == [] and len(adapters.request_fetches) == 0
