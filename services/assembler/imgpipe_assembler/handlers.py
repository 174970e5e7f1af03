"""Row results in, request progress and completion out. The assembler is the only writer of progress."""

import hashlib
import itertools
import logging
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import IO

from prometheus_client import Counter

from imgpipe_assembler.output_csv import OutputCsvWriter
from imgpipe_assembler.ports import Completions, Store
from imgpipe_bus import Consumed, Publisher, Unprocessable
from imgpipe_runtime.blobs import BlobStore, file_url, output_csv_name
from imgpipe_runtime.documents import Origin, stored_progress
from imgpipe_runtime.logs import about_request
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
from imgpipe_schemas.events import MAX_IMAGES_PER_ROW, MAX_URL_CHARS
from imgpipe_schemas.topics import REQUESTS_COMPLETED

log = logging.getLogger(__name__)

UNPROCESSED = "not_processed"
# An output CSV is built in memory up to this size, then in a temporary file.
OUTPUT_SPOOL_BYTES = 4 * 1024 * 1024

RECEIVED_RESULTS = Counter(
    "imgpipe_row_results", "Row results the assembler received (a redelivered or replayed one counts again)."
)
COMPLETED_REQUESTS = Counter(
    "imgpipe_requests_completed",
    "Requests finished, by final status (an update of a finished one is not counted).",
    ["status"],
)
COMPLETED_ROWS = Counter("imgpipe_rows_completed", "Rows done in the requests finished, counted once, as they finish.")
for _status in (RequestStatus.SUCCESS, RequestStatus.FAILED):
    COMPLETED_REQUESTS.labels(_status.value)  # both series exist from the start, at 0


@dataclass(frozen=True)
class Adapters:
    """What the handlers and the reconciler reach outside with, built once by main.build_app;
    ``public_base_url`` is what the output CSV's link is made of where ingest serves it (the blob store's own
    URL otherwise)."""

    store: Store
    blobs: BlobStore
    producer: Publisher
    public_base_url: str


async def record_results(results: Sequence[RowProcessed], adapters: Adapters) -> None:
    """Idempotent: a result delivered twice counts once, and completion is re-checked on every delivery."""
    changed = await adapters.store.record_rows(results)
    RECEIVED_RESULTS.inc(len(results))
    for request_id in dict.fromkeys(str(result.request_id) for result in results):
        with about_request(request_id):
            await complete_if_done(request_id, adapters, output_changed=request_id in changed)


async def register_requests(accepted: Sequence[RequestAccepted], adapters: Adapters) -> None:
    """Requests produced straight to Kafka become known here; an upload's request is known already.
    Their results may have arrived first, so completion is checked."""
    for event in accepted:
        with about_request(event.request_id):
            if await adapters.store.register_request(event):
                log.info("request %s received from Kafka: %d rows", event.request_id, event.rows_total)
                await complete_if_done(str(event.request_id), adapters)


async def register_rows(rows: Sequence[RowSubmitted], adapters: Adapters, letters: Sequence[Consumed] = ()) -> None:
    """Stores the input of rows produced straight to Kafka, so that their request can be re-driven and
    its output CSV built, and where each was read (``letters``), so that the reconciler can tell a row that
    waits for a worker from a lost one. Rows of an upload were stored by ingest and are skipped."""
    known = await adapters.store.known({str(row.request_id) for row in rows})
    direct = [
        (row, letter)
        for row, letter in itertools.zip_longest(rows, letters)
        if known.get(str(row.request_id), {}).get("origin") != Origin.UPLOAD
    ]
    if not direct:
        return
    for row, _ in direct:
        request = known.get(str(row.request_id))
        if request is not None and row.row_index >= request["rows_total"]:
            raise Unprocessable(
                f"row_index {row.row_index} is outside request {row.request_id}, which has {request['rows_total']} rows"
            )
    located: dict[str, list[tuple[int, tuple[int, int]]]] = {}
    for row, letter in direct:
        finished = known.get(str(row.request_id), {}).get("status") in FINISHED
        if letter is not None and not finished:  # a finished request is never re-driven
            located.setdefault(str(row.request_id), []).append((row.row_index, (letter.partition, letter.offset)))
    for request_id, places in located.items():
        await adapters.store.record_publication(request_id, [index for index, _ in places], [at for _, at in places])
    for request_id in await adapters.store.register_rows([row for row, _ in direct]):
        with about_request(request_id):
            await complete_if_done(request_id, adapters)


async def complete_if_done(
    request_id: str, adapters: Adapters, *, output_changed: bool = False, give_up: bool = False
) -> None:
    """Builds the output and announces it when every row is in: once when the request completes, and
    again (as an update) when a replayed row changes a finished request's output. ``give_up`` finishes
    it with the rows there are (FAILED when rows are missing). Decide, build, finish, announce."""
    request = await adapters.store.get(request_id)
    if request is None:
        log.info("results for request %s wait for its request.accepted event", request_id)
        return
    step = await decide(request, adapters.store, output_changed=output_changed, give_up=give_up)
    if step is Next.BUILD:
        built = await build(request, adapters, give_up=give_up)
        if built is None:
            return
        finished = await finish(request, built, adapters)
        if finished is None:
            return
        request = finished
    elif step is Next.NOTHING:
        return
    await announce(request, adapters)


class Next(Enum):
    NOTHING = "nothing"  # rows are missing, or the request is finished and announced as it is
    ANNOUNCE = "announce"  # finished as it is, but its completion never went out (the broker was down)
    BUILD = "build"  # every row is in, or a finished request's rows changed: the output is built


async def decide(request: dict, store: Completions, *, output_changed: bool, give_up: bool) -> Next:
    """What the request needs. A finished request's output is rebuilt also when a row changed after it was
    built, which a crash between the two leaves behind (the row's redelivery then changes nothing)."""
    if request["status"] in FINISHED:
        if output_changed or await store.output_stale(request):
            return Next.BUILD
        return Next.NOTHING if request.get("completion_published") else Next.ANNOUNCE
    if not give_up and await store.rows_done(request) < request["rows_total"]:
        return Next.NOTHING
    return Next.BUILD


@dataclass(frozen=True)
class Built:
    output: "BuiltOutput"
    output_file: str


async def build(request: dict, adapters: Adapters, *, give_up: bool) -> Built | None:
    """The output CSV, written from the rows and stored; None when there is nothing new to announce: rows
    are still missing (a live count ahead of the rows), or a finished request's rebuilt output is the one
    it has."""
    request_id = request["_id"]
    output_file = output_csv_name(request_id, request.get("output_token"))
    with tempfile.SpooledTemporaryFile(max_size=OUTPUT_SPOOL_BYTES) as spool:
        built = await write_output(request, adapters.store, spool)
        if not give_up and built.progress.rows_done < request["rows_total"]:
            return None  # the missing rows complete it when they come
        unchanged = (built.status, built.progress) == (request["status"], stored_progress(request))
        if (
            request["status"] in FINISHED
            and unchanged
            and built.digest == await _stored_digest(adapters.blobs, request.get("output_file"))
        ):
            await adapters.store.mark_output_built(request_id)
            return None
        spool.seek(0)
        await adapters.blobs.put(output_file, spool, "text/csv")
    return Built(built, output_file)


async def finish(request: dict, built: Built, adapters: Adapters) -> dict | None:
    """Records how the request finished (or its new output), with a new completion event id; None when
    another delivery finished it meanwhile."""
    request_id, was_finished = request["_id"], request["status"] in FINISHED
    if was_finished and not request.get("completion_published", True):
        # Its completion was never announced (the broker was down): it goes out too, so that the
        # subscriber gets both rather than an update of a request it never saw complete.
        await announce(request, adapters)
    status, counted = built.output.status, built.output.progress
    updated = await adapters.store.finish(request_id, status, built.output_file, counted, update=was_finished)
    if updated is None:
        return None
    if not was_finished:
        COMPLETED_REQUESTS.labels(status.value).inc()
        COMPLETED_ROWS.inc(counted.rows_done)
    log.info("request %s %s: %s", request_id, updated["completion_type"], counted.model_dump())
    return updated


async def announce(request: dict, adapters: Adapters) -> None:
    """Publishes the request's completion (or update) as last fixed by finish, with its event id."""
    request_id, event_id = request["_id"], request["completion_event_id"]
    await adapters.producer.publish(
        REQUESTS_COMPLETED,
        RequestCompleted(
            event_id=uuid.UUID(event_id),
            event_type=request.get("completion_type", "request.completed"),
            request_id=uuid.UUID(request_id),
            status=request["status"],
            output_file_url=file_url(adapters.blobs, adapters.public_base_url, request["output_file"]),
            progress=stored_progress(request),
            webhook_url=request.get("webhook_url"),
        ),
    )
    # Finished: never re-driven, so where its rows went is of no more use. Before the mark, so that the
    # reconciler's re-publishing of an unmarked completion deletes them too after a crash here.
    await adapters.store.forget_publications(request_id)
    await adapters.store.mark_completion_published(request_id, event_id)


@dataclass(frozen=True)
class BuiltOutput:
    status: RequestStatus
    progress: Progress
    digest: str


async def write_output(request: dict, store: Completions, out: IO[bytes]) -> BuiltOutput:
    """Writes the request's output CSV into ``out`` from its rows, read a chunk at a time in input order,
    and finds how it finishes in the same pass: memory does not grow with the request's rows."""
    writer = OutputCsvWriter(request["columns"], out)
    tally = Tally(request)
    async for row in store.iter_rows(request):
        writer.add(row["cells"], [ImageResult.model_validate(image) for image in row.get("images", [])])
        tally.add(row)
    status, counted = tally.outcome()
    return BuiltOutput(status, counted, writer.digest.hexdigest())


async def _stored_digest(blobs: BlobStore, name: str | None) -> str | None:
    reader = await blobs.open(name) if name else None
    if reader is None:
        return None
    digest = hashlib.sha256()
    async for chunk in reader.chunks():
        digest.update(chunk)
    return digest.hexdigest()


class Tally:
    """How a request finishes with the rows it has (its rows in input order, see CompletionStore.iter_rows),
    counted a row at a time. FAILED when rows are missing (given up on) or not one image was ever
    processed (every row given up on); else SUCCESS, even if some images failed: the output CSV says which."""

    def __init__(self, request: dict) -> None:
        self._request = request
        self.rows = self.rows_done = self.images_ok = self.images_failed = 0
        self.processed_any = False

    def add(self, row: dict) -> None:
        self.rows += 1
        images = row.get("images", [])
        self.processed_any = self.processed_any or any(image["error_code"] != UNPROCESSED for image in images)
        if row.get("done"):
            self.rows_done += 1
            self.images_ok += row["images_ok"]
            self.images_failed += row["images_failed"]

    def outcome(self) -> tuple[RequestStatus, Progress]:
        request = self._request
        failed = self.rows < request["rows_total"] or not self.processed_any
        counted = Progress(
            rows_total=request["rows_total"],
            rows_done=self.rows_done,
            images_total=request["images_total"],
            images_ok=self.images_ok,
            images_failed=self.images_failed,
        )
        return (RequestStatus.FAILED if failed else RequestStatus.SUCCESS), counted


def outcome(request: dict, rows: Iterable[dict]) -> tuple[RequestStatus, Progress]:
    """Tally's verdict on ``rows``."""
    tally = Tally(request)
    for row in rows:
        tally.add(row)
    return tally.outcome()


def unprocessed_results(request_id: str, row: dict, reason: str) -> RowProcessed:
    """A row the pipeline gave up on: every image an error, so that the request can still finish. A row
    stored before the events were bounded is reported within the bounds."""
    urls = [url[:MAX_URL_CHARS] for url in row["image_urls"][:MAX_IMAGES_PER_ROW]]
    return RowProcessed(
        request_id=uuid.UUID(request_id),
        row_index=row["row_index"],
        images=[ImageResult(source_url=url, error_code=UNPROCESSED, error_message=reason) for url in urls],
    )
