"""The image worker's fetch and compress in memory, and its adapters wired to them: for the tests of row
handling and of the image worker's metrics."""

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from imgpipe_image_worker.adapters.downloader import FetchFailed
from imgpipe_image_worker.compress import Compressed, Listing
from imgpipe_image_worker.handlers import Adapters
from imgpipe_image_worker.shares import KeyedSlots
from imgpipe_image_worker.sources import SharedSources
from imgpipe_schemas import ImageOptions, RowSubmitted
from tests.support.blob_fakes import CodecWrittenBlobs
from tests.support.bus_fakes import RecordingPublisher


class FakeSources:
    def __init__(self, transient: Iterable[str] = ()) -> None:
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
        producer=RecordingPublisher(),
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
        request_id=request_id,
        row_index=index,
        serial=index + 1,
        product_name="P",
        image_urls=urls,
        quality=quality,
        apparel=apparel,
        image_options=ImageOptions(**image_options),
    )
