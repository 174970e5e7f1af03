"""Row results in, request progress and completion out. The assembler is the only writer of progress."""

import logging
import uuid
from collections.abc import Sequence

from imgpipe_assembler.adapters.requests import SUCCESS, ProgressStore
from imgpipe_assembler.output_csv import build_output_csv
from imgpipe_bus import EventProducer
from imgpipe_runtime.blobs import BlobStore, blob_url, output_csv_name
from imgpipe_schemas import Progress, RequestCompleted, RowProcessed
from imgpipe_schemas.topics import REQUESTS_COMPLETED

log = logging.getLogger(__name__)


async def record_results(
    results: Sequence[RowProcessed],
    *,
    store: ProgressStore,
    blobs: BlobStore,
    producer: EventProducer,
    public_base_url: str,
) -> None:
    """Idempotent: a result delivered twice counts once, and completion is re-checked on every delivery."""
    await store.record_rows(results)
    for request_id in dict.fromkeys(str(result.request_id) for result in results):
        await complete_if_done(request_id, store=store, blobs=blobs, producer=producer, public_base_url=public_base_url)


async def complete_if_done(
    request_id: str, *, store: ProgressStore, blobs: BlobStore, producer: EventProducer, public_base_url: str
) -> None:
    request = await store.get(request_id)
    if request is None:
        log.warning("row result for unknown request %s ignored", request_id)
        return
    if request["status"] == SUCCESS and request.get("completion_published"):
        return
    if request["status"] != SUCCESS:
        if await store.rows_done(request_id) < request["rows_total"]:
            return
        rows = await store.rows(request_id)
        output_file = output_csv_name(request_id)
        await blobs.put(output_file, build_output_csv(request["columns"], rows), "text/csv")
        progress = _progress(request, rows)
        request = await store.mark_success(request_id, output_file, progress) or await store.get(request_id)
        log.info("request %s complete: %s", request_id, progress.model_dump())
    await producer.publish(
        REQUESTS_COMPLETED,
        RequestCompleted(
            event_id=uuid.UUID(request["completion_event_id"]),
            request_id=uuid.UUID(request_id),
            status=request["status"],
            output_file_url=blob_url(public_base_url, request["output_file"]),
            progress=Progress.model_validate(request["progress"]),
            webhook_url=request.get("webhook_url"),
        ),
    )
    await store.mark_completion_published(request_id)


def _progress(request: dict, rows) -> Progress:
    images = [image for _, row_images in rows for image in row_images]
    return Progress(
        rows_total=request["rows_total"],
        rows_done=len(rows),
        images_total=request["images_total"],
        images_ok=sum(image.ok for image in images),
        images_failed=sum(not image.ok for image in images),
    )
