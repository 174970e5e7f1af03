"""One row in, one row result out: every image fetched concurrently, compressed, stored, reported."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from imgpipe_image_worker.adapters.downloader import FetchFailed
from imgpipe_image_worker.compress import Compressed, ImageRejected
from imgpipe_runtime.blobs import BlobStore, blob_url, output_image_stem
from imgpipe_schemas import ImageResult, RowProcessed, RowSubmitted

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[bytes]]
Compress = Callable[[bytes, int, str, str], Awaitable[Compressed]]


async def process_row(
    row: RowSubmitted, *, fetch: Fetch, compress: Compress, blobs: BlobStore, public_base_url: str
) -> RowProcessed:
    images = await asyncio.gather(
        *(
            process_image(row, index, url, fetch=fetch, compress=compress, blobs=blobs, public_base_url=public_base_url)
            for index, url in enumerate(row.image_urls)
        )
    )
    return RowProcessed(request_id=row.request_id, row_index=row.row_index, images=list(images))


async def process_image(
    row: RowSubmitted, index: int, url: str, *, fetch: Fetch, compress: Compress, blobs: BlobStore, public_base_url: str
) -> ImageResult:
    bytes_in = 0
    try:
        source = await fetch(url)
        bytes_in = len(source)
        stem = output_image_stem(str(row.request_id), row.row_index, index)
        output = await compress(source, row.quality, row.output_format, stem)
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
        await blobs.put(name, output.data, output.content_type)
    return ImageResult(
        source_url=url,
        output_url=blob_url(public_base_url, name),
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
