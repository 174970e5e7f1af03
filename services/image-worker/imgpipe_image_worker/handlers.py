"""One row in, one row result out: every image fetched concurrently, compressed, stored, reported.

Two time budgets bound a row, whatever its sources do. An image's budget (``image_budget_s``) covers its
fetch, every redirect hop, every retry attempt and every wait between attempts (including the wait for
the worker's memory budget), and its compression; past it the image is reported as
``time_budget_exceeded``, a transient error like a timeout. The row's budget (``row_budget_s``) bounds
the rest (storing the outputs, waiting for a source that another row of the request is fetching): once
it is spent the row's result is sent with every image not yet done reported the same way. Either way it
is that image's error, never the row's failure.

One request's images fetch at most ``request_fetches.per_key`` at once (see shares): a request whose
sources stall spends its own images' budgets waiting, never another request's connections.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass

from imgpipe_bus import Consumed, DeadLetterCopy, Publisher
from imgpipe_image_worker import metrics
from imgpipe_image_worker.adapters.downloader import FetchFailed
from imgpipe_image_worker.compress import Compressed, ImageRejected, Listing
from imgpipe_image_worker.shares import KeyedSlots
from imgpipe_image_worker.sources import SharedSources
from imgpipe_runtime.blobs import BlobStore, file_url, output_image_stem
from imgpipe_schemas import ImageOptions, ImageResult, RowProcessed, RowSubmitted
from imgpipe_schemas.topics import ROWS_PROCESSED

log = logging.getLogger(__name__)

Fetch = Callable[[str, float], AbstractAsyncContextManager[bytes]]
Compress = Callable[[bytes, int, str, str, ImageOptions, Listing], Awaitable[Compressed]]


@dataclass(frozen=True)
class Adapters:
    """What the handlers reach outside with, built once by main.build_app; ``public_base_url`` is what the
    output images' links are made of where ingest serves them (the blob store's own URLs otherwise).
    ``fetch(url, deadline)`` holds the source's bytes for its block; ``request_fetches`` is keyed by
    request id and bounds each request's fetches in flight."""

    fetch: Fetch
    compress: Compress
    blobs: BlobStore
    producer: Publisher
    public_base_url: str
    sources: SharedSources
    image_budget_s: float
    row_budget_s: float
    request_fetches: KeyedSlots


async def handle_row(row: RowSubmitted, letter: Consumed, adapters: Adapters) -> DeadLetterCopy | None:
    """Reports the row's result; a row some of whose images failed transiently even after retries also
    goes to the dead-letter topic, for replay. The loop dead-letters that copy, so ``letter`` is not kept."""
    result = await process_row(row, adapters)
    await adapters.producer.publish(ROWS_PROCESSED, result)
    metrics.reported(result.images)
    reason = replay_reason(result)
    return None if reason is None else DeadLetterCopy(reason)


async def process_row(row: RowSubmitted, adapters: Adapters) -> RowProcessed:
    """Every image's result, in input order, by the row's budget at the latest."""
    urls = row.image_urls
    work = [asyncio.ensure_future(process_image(row, index, url, adapters)) for index, url in enumerate(urls)]
    try:
        done, late = await asyncio.wait(work, timeout=adapters.row_budget_s, return_when=asyncio.FIRST_EXCEPTION)
        if failed := next((error for task in done if (error := task.exception()) is not None), None):
            raise failed
    finally:
        for task in work:
            task.cancel()
    if late:
        await asyncio.wait(late)
        log.info("row %s/%s: %d image(s) not done within its budget", row.request_id, row.row_index, len(late))
    message = f"the row's time budget of {adapters.row_budget_s:g} s ran out before this image was done"
    images = [
        over_budget(url, message) if task.cancelled() else task.result() for task, url in zip(work, urls, strict=True)
    ]
    return RowProcessed(request_id=row.request_id, row_index=row.row_index, images=images)


async def process_image(row: RowSubmitted, index: int, url: str, adapters: Adapters) -> ImageResult:
    """A source that appears more than once in the request is fetched and compressed once (see sources):
    once per set of options that shape the output, all of which are in the key, and with a preset once per
    place in a row its rules tell apart (main image or not, apparel or not), since its checks differ."""
    listing = Listing(main=index == 0, apparel=row.apparel)
    checked_as = listing if row.image_options.preset is not None else None
    key = (str(row.request_id), url, row.quality, row.output_format, row.image_options, checked_as)
    return await adapters.sources.once(key, lambda: fetch_and_compress(row, index, url, adapters, listing))


async def fetch_and_compress(
    row: RowSubmitted, index: int, url: str, adapters: Adapters, listing: Listing = Listing()
) -> ImageResult:
    """A compression cut short by the budget stops its codec process (see codec_pool): the CPU of an image
    is inside its budget, whatever the image."""
    bytes_in = 0
    stem = output_image_stem(str(row.request_id), row.row_index, index)
    deadline = asyncio.get_running_loop().time() + adapters.image_budget_s
    budget = asyncio.timeout_at(deadline)
    stage = "fetching"
    clock = metrics.StageClock()
    try:
        async with budget, AsyncExitStack() as held:
            async with adapters.request_fetches.hold(str(row.request_id)):  # until downloaded, not compressed
                source = await held.enter_async_context(adapters.fetch(url, deadline))
            bytes_in = len(source)
            clock.fetched(bytes_in)
            stage = "compressing"
            output = await adapters.compress(source, row.quality, row.output_format, stem, row.image_options, listing)
            clock.compressed()
    except (FetchFailed, ImageRejected) as exc:
        clock.failed()
        log.info("image %s of row %s/%s failed: %s %s", index, row.request_id, row.row_index, exc.code, exc)
        return ImageResult(
            source_url=url,
            error_code=exc.code,
            error_message=str(exc),
            retryable=getattr(exc, "transient", False),
            bytes_in=bytes_in,
        )
    except TimeoutError:
        if not budget.expired():
            raise
        clock.failed()
        log.info("image %s of row %s/%s ran out of time while %s", index, row.request_id, row.row_index, stage)
        message = f"the image's time budget of {adapters.image_budget_s:g} s ran out while {stage}"
        return over_budget(url, message, bytes_in)
    name = f"{stem}.{output.extension}"
    stored_in = None
    if output.data is not None:  # else the codec process stored it
        started = time.perf_counter()
        await adapters.blobs.put(name, output.data, output.content_type)
        stored_in = time.perf_counter() - started
    metrics.stored(output.length, stored_in)
    return ImageResult(
        source_url=url,
        output_url=file_url(adapters.blobs, adapters.public_base_url, name),
        bytes_in=bytes_in,
        bytes_out=output.length,
        kept_source=output.kept_source,
        width=output.width,
        height=output.height,
        quality=output.quality,
        score=output.score,
        checks=output.checks,
    )


TIME_BUDGET_EXCEEDED = "time_budget_exceeded"


def over_budget(url: str, message: str, bytes_in: int = 0) -> ImageResult:
    """Transient, like a timeout: the source may answer in time later, so the row is kept for replay."""
    return ImageResult(
        source_url=url, error_code=TIME_BUDGET_EXCEEDED, error_message=message, retryable=True, bytes_in=bytes_in
    )


class RetriesExhausted(Exception):
    """Some images of a row failed transiently even after retries: the row is kept for replay."""


def replay_reason(result: RowProcessed) -> RetriesExhausted | None:
    failed = [image for image in result.images if image.retryable]
    if not failed:
        return None
    return RetriesExhausted("; ".join(f"{image.source_url}: {image.error_code}" for image in failed))
