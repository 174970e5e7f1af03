"""One row in, one row result out: every image fetched concurrently, compressed, stored, reported."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from imgpipe_bus import DeadLetterCopy, EventProducer, Letter
from imgpipe_image_worker.adapters.downloader import FetchFailed
from imgpipe_image_worker.compress import Compressed, ImageRejected
from imgpipe_image_worker.sources import SharedSources
from imgpipe_runtime.blobs import BlobStore, blob_url, output_image_stem
from imgpipe_schemas import ImageResult, RowProcessed, RowSubmitted
from imgpipe_schemas.topics import ROWS_PROCESSED

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[bytes]]
Compress = Callable[[bytes, int, str, str], Awaitable[Compressed]]


@dataclass(frozen=True)
class Adapters:
    """What the handlers reach outside with, built once by main.build_app; ``public_base_url`` is what the
    output images' links are made of."""

    fetch: Fetch
    compress: Compress
    blobs: BlobStore
    producer: EventProducer
    public_base_url: str
    sources: SharedSources


async def handle_row(row: RowSubmitted, letter: Letter, adapters: Adapters) -> DeadLetterCopy | None:
    """Reports the row's result; a row some of whose images failed transiently even after retries also
    goes to the dead-letter topic, for replay. The loop dead-letters that copy, so ``letter`` is not kept."""
    result = await process_row(row, adapters)
    await adapters.producer.publish(ROWS_PROCESSED, result)
    reason = replay_reason(result)
    return None if reason is None else DeadLetterCopy(reason)


async def process_row(row: RowSubmitted, adapters: Adapters) -> RowProcessed:
    images = await asyncio.gather(
        *(process_image(row, index, url, adapters) for index, url in enumerate(row.image_urls))
    )
    return RowProcessed(request_id=row.request_id, row_index=row.row_index, images=list(images))


async def process_image(row: RowSubmitted, index: int, url: str, adapters: Adapters) -> ImageResult:
    """A source that appears more than once in the request is fetched and compressed once (see sources)."""
    key = (str(row.request_id), url, row.quality, row.output_format)
    return await adapters.sources.once(key, lambda: fetch_and_compress(row, index, url, adapters))


async def fetch_and_compress(row: RowSubmitted, index: int, url: str, adapters: Adapters) -> ImageResult:
    bytes_in = 0
    try:
        source = await adapters.fetch(url)
        bytes_in = len(source)
        stem = output_image_stem(str(row.request_id), row.row_index, index)
        output = await adapters.compress(source, row.quality, row.output_format, stem)
    except (FetchFailed, ImageRejected) as exc:
        log.info("image %s of row %s/%s failed: %s %s", index, row.request_id, row.row_index, exc.code, exc)
        return ImageResult(
            source_url=url,
            error_code=exc.code,
            error_message=str(exc),
            retryable=getattr(exc, "transient", False),
            bytes_in=bytes_in,
        )
    name = f"{stem}.{output.extension}"
    if output.data is not None:  # else the codec process stored it
        await adapters.blobs.put(name, output.data, output.content_type)
    return ImageResult(
        source_url=url,
        output_url=blob_url(adapters.public_base_url, name),
        bytes_in=bytes_in,
        bytes_out=output.length,
        kept_source=output.kept_source,
    )


class RetriesExhausted(Exception):
    """Some images of a row failed transiently even after retries: the row is kept for replay."""


def replay_reason(result: RowProcessed) -> RetriesExhausted | None:
    failed = [image for image in result.images if image.retryable]
    if not failed:
        return None
    return RetriesExhausted("; ".join(f"{image.source_url}: {image.error_code}" for image in failed))
