"""Row results in, request progress and completion out. The assembler is the only writer of progress."""

import logging
import uuid
from collections.abc import Sequence

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.output_csv import build_output_csv
from imgpipe_bus import EventProducer, Unprocessable
from imgpipe_runtime.blobs import BlobStore, blob_url, output_csv_name
from imgpipe_runtime.documents import Origin, progress, stored_progress
from imgpipe_schemas import (
    FINISHED,
    ImageResult,
    Progress,
    RequestAccepted,
    RequestCompleted,
    RequestStatus,
    RowProcessed,
    RowSubmitted,
)
from imgpipe_schemas.topics import REQUESTS_COMPLETED

log = logging.getLogger(__name__)

UNPROCESSED = "not_processed"


async def record_results(
    results: Sequence[RowProcessed],
    *,
    store: ProgressStore,
    blobs: BlobStore,
    producer: EventProducer,
    public_base_url: str,
) -> None:
    """Idempotent: a result delivered twice counts once, and completion is re-checked on every delivery."""
    changed = await store.record_rows(results)
    for request_id in dict.fromkeys(str(result.request_id) for result in results):
        await complete_if_done(
            request_id,
            store=store,
            blobs=blobs,
            producer=producer,
            public_base_url=public_base_url,
            output_changed=request_id in changed,
        )


async def register_requests(accepted: Sequence[RequestAccepted], *, store: ProgressStore, **adapters) -> None:
    """Requests produced straight to Kafka become known here; an upload's request is known already.
    Their results may have arrived first, so completion is checked."""
    for event in accepted:
        if await store.register_request(event):
            log.info("request %s received from Kafka: %d rows", event.request_id, event.rows_total)
            await complete_if_done(str(event.request_id), store=store, **adapters)


async def register_rows(rows: Sequence[RowSubmitted], *, store: ProgressStore, **adapters) -> None:
    """Stores the input of rows produced straight to Kafka, so that their request can be re-driven and
    its output CSV built. Rows of an upload were stored by ingest and are skipped."""
    known = await store.known({str(row.request_id) for row in rows})
    direct = [row for row in rows if known.get(str(row.request_id), {}).get("origin") != Origin.UPLOAD]
    if not direct:
        return
    for row in direct:
        request = known.get(str(row.request_id))
        if request is not None and row.row_index >= request["rows_total"]:
            raise Unprocessable(
                f"row_index {row.row_index} is outside request {row.request_id}, which has {request['rows_total']} rows"
            )
    for request_id in await store.register_rows(direct):
        await complete_if_done(request_id, store=store, **adapters)


async def complete_if_done(
    request_id: str,
    *,
    store: ProgressStore,
    blobs: BlobStore,
    producer: EventProducer,
    public_base_url: str,
    output_changed: bool = False,
    give_up: bool = False,
) -> None:
    """Builds the output and announces it when every row is in: once when the request completes, and
    again (as an update) when a replayed row changes a finished request's output. ``give_up`` finishes
    it with the rows there are (FAILED when rows are missing)."""
    request = await store.get(request_id)
    if request is None:
        log.info("results for request %s wait for its request.accepted event", request_id)
        return
    finished = request["status"] in FINISHED
    if not finished or output_changed:
        if not give_up and await store.rows_done(request) < request["rows_total"]:
            return
        rows = await store.rows(request)
        output_file = output_csv_name(request_id)
        await blobs.put(output_file, build_output_csv(request["columns"], _output_rows(rows)), "text/csv")
        status, counted = outcome(request, rows)
        updated = await store.finish(request_id, status, output_file, counted, update=finished)
        if updated is None:  # finished meanwhile by another delivery
            return
        request = updated
        log.info("request %s %s: %s", request_id, request["completion_type"], counted.model_dump())
    elif request.get("completion_published"):
        return
    event_id = request["completion_event_id"]
    await producer.publish(
        REQUESTS_COMPLETED,
        RequestCompleted(
            event_id=uuid.UUID(event_id),
            event_type=request.get("completion_type", "request.completed"),
            request_id=uuid.UUID(request_id),
            status=request["status"],
            output_file_url=blob_url(public_base_url, request["output_file"]),
            progress=stored_progress(request),
            webhook_url=request.get("webhook_url"),
        ),
    )
    await store.mark_completion_published(request_id, event_id)


def outcome(request: dict, rows: Sequence[dict]) -> tuple[RequestStatus, Progress]:
    """How a request finishes with the rows it has (its rows in input order, see ProgressStore.rows), and
    its progress. FAILED when rows are missing (given up on) or not one image was ever processed (every
    row given up on); else SUCCESS, even if some images failed: the output CSV says which."""
    never_processed = all(image["error_code"] == UNPROCESSED for row in rows for image in row.get("images", []))
    failed = len(rows) < request["rows_total"] or never_processed
    return (RequestStatus.FAILED if failed else RequestStatus.SUCCESS), progress(request, rows)


def _output_rows(rows: Sequence[dict]) -> list[tuple[list[str], list[ImageResult]]]:
    return [(row["cells"], [ImageResult.model_validate(image) for image in row.get("images", [])]) for row in rows]


def unprocessed_results(request_id: str, row: dict, reason: str) -> RowProcessed:
    """A row the pipeline gave up on: every image an error, so that the request can still finish."""
    return RowProcessed(
        request_id=uuid.UUID(request_id),
        row_index=row["row_index"],
        images=[ImageResult(source_url=url, error_code=UNPROCESSED, error_message=reason) for url in row["image_urls"]],
    )
