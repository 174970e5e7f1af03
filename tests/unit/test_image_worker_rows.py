"""The image worker's row handling with in-memory adapters: each distinct source of a request is
fetched and compressed once, wherever it appears, and a transient failure is tried again."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imgpipe_image_worker.adapters.downloader import FetchFailed
from imgpipe_image_worker.compress import Compressed, Listing
from imgpipe_image_worker.handlers import Adapters, process_row
from imgpipe_image_worker.shares import KeyedSlots
from imgpipe_image_worker.sources import SharedSources
from imgpipe_schemas import ImageOptions, RowSubmitted
from tests.blob_fakes import CodecWrittenBlobs


class FakeSources:
    def __init__(self, transient: set[str] = frozenset()) -> None:
        self.fetched: list[str] = []
        self.compressed = 0
        self.options: list[ImageOptions] = []
        self.listings: list[Listing] = []
        self.transient = set(transient)

    @asynccontextmanager
    async def fetch(self, url: str, deadline: float) -> AsyncIterator[bytes]:
        self.fetched.append(url)
        if url in self.transient:
            self.transient.discard(url)  # fails once
            raise FetchFailed("timeout", f"{url}: timed out", transient=True)
        yield b"source bytes of " + url.encode()

    async def compress(
        self, data: bytes, quality: int, output_format: str, stem: str, options: ImageOptions, listing: Listing
    ) -> Compressed:
        self.compressed += 1
        self.options.append(options)
        self.listings.append(listing)
        checks = [f"main={listing.main} apparel={listing.apparel}"] if options.preset else None
        return Compressed(None, "jpg", "image/jpeg", len(data) // 2, checks=checks)


def adapters(fake: FakeSources) -> Adapters:
    return Adapters(
        fetch=fake.fetch,
        compress=fake.compress,
        blobs=CodecWrittenBlobs(),
        producer=None,
        public_base_url="http://api",
        sources=SharedSources(),
        image_budget_s=30,
        row_budget_s=30,
        request_fetches=KeyedSlots(50),
    )


def row(
    request_id: uuid.UUID, index: int, urls: list[str], quality: int = 50, apparel: bool = False, **image_options
) -> RowSubmitted:
    return RowSubmitted(
        apparel=apparel,
        request_id=request_id,
        row_index=index,
        serial=index + 1,
        product_name="P",
        image_urls=urls,
        quality=quality,
        image_options=ImageOptions(**image_options),
    )


async def test_a_source_repeated_across_rows_is_fetched_and_compressed_once():
    fake = FakeSources()
    wired = adapters(fake)
    request = uuid.uuid4()
    first = await process_row(row(request, 0, ["http://a/x.jpg", "http://a/y.jpg", "http://a/x.jpg"]), wired)
    second = await process_row(row(request, 1, ["http://a/x.jpg"]), wired)
    assert sorted(fake.fetched) == ["http://a/x.jpg", "http://a/y.jpg"] and fake.compressed == 2
    x_output = first.images[0].output_url
    assert x_output and first.images[2].output_url == x_output == second.images[0].output_url
    assert first.images[1].output_url != x_output


async def test_another_request_or_quality_is_its_own_work():
    fake = FakeSources()
    wired = adapters(fake)
    await process_row(row(uuid.uuid4(), 0, ["http://a/x.jpg"]), wired)
    await process_row(row(uuid.uuid4(), 0, ["http://a/x.jpg"]), wired)
    request = uuid.uuid4()
    await process_row(row(request, 0, ["http://a/x.jpg"], quality=30), wired)
    await process_row(row(request, 1, ["http://a/x.jpg"], quality=80), wired)
    assert len(fake.fetched) == 4


async def test_other_image_options_are_their_own_work():
    """A direct producer may ask for two sizes of one source in one request: each is made and stored."""
    fake = FakeSources()
    wired = adapters(fake)
    request = uuid.uuid4()
    small = await process_row(row(request, 0, ["http://a/x.jpg"], max_width=100), wired)
    large = await process_row(row(request, 1, ["http://a/x.jpg"], max_width=800), wired)
    again = await process_row(row(request, 2, ["http://a/x.jpg"], max_width=800), wired)
    assert len(fake.fetched) == 2 and fake.options == [ImageOptions(max_width=100), ImageOptions(max_width=800)]
    assert small.images[0].output_url != large.images[0].output_url == again.images[0].output_url


async def test_with_a_preset_a_source_is_checked_as_the_image_it_is_in_each_row():
    """Its checks depend on whether it is a row's main image and the row's product apparel: shared only
    between places its marketplace's rules do not tell apart."""
    fake = FakeSources()
    wired = adapters(fake)
    request = uuid.uuid4()
    first = await process_row(row(request, 0, ["http://a/x.jpg", "http://a/y.jpg"], preset="amazon"), wired)
    second = await process_row(row(request, 1, ["http://a/y.jpg", "http://a/x.jpg"], preset="amazon"), wired)
    third = await process_row(row(request, 2, ["http://a/x.jpg"], apparel=True, preset="amazon"), wired)
    again = await process_row(row(request, 3, ["http://a/z.jpg", "http://a/x.jpg"], preset="amazon"), wired)
    assert [image.checks for image in first.images] == [["main=True apparel=False"], ["main=False apparel=False"]]
    assert [image.checks for image in second.images] == [["main=True apparel=False"], ["main=False apparel=False"]]
    assert third.images[0].checks == ["main=True apparel=True"]
    assert again.images[1].output_url == second.images[1].output_url  # x as a second image: made once
    assert fake.compressed == 6  # x three ways, y two, z once


async def test_a_transient_failure_is_not_shared_with_later_positions():
    fake = FakeSources(transient={"http://a/slow.jpg"})
    wired = adapters(fake)
    request = uuid.uuid4()
    failed = await process_row(row(request, 0, ["http://a/slow.jpg"]), wired)
    assert failed.images[0].retryable
    again = await process_row(row(request, 1, ["http://a/slow.jpg"]), wired)
    assert again.images[0].ok and fake.fetched == ["http://a/slow.jpg", "http://a/slow.jpg"]


async def test_a_cancelled_row_does_not_cancel_another_waiting_for_the_same_source():
    import asyncio

    from imgpipe_schemas import ImageResult

    sources = SharedSources()
    release = asyncio.Event()

    async def slow() -> ImageResult:
        await release.wait()
        return ImageResult(source_url="http://a/x.jpg", output_url="http://api/x.jpg")

    first = asyncio.ensure_future(sources.once("k", slow))
    second = asyncio.ensure_future(sources.once("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert (await second).output_url == "http://api/x.jpg"
    assert first.cancelled()
