"""The MongoDB documents that more than one service reads, defined in one place.

Each document has one writer. Ingest stores an upload's request and rows; the assembler stores the rows'
results, the finished request's progress and output, and the request and rows of a request produced
straight to Kafka; the notifier stores webhook deliveries. Publications (where rows were published) are
only ever inserted, by whoever published: ingest, and the assembler's reconciler when it re-drives.
Writers build the first version of a document with the builders here, and a service reading another's
document uses the readers here, so that the services agree on names, ids and indexes by importing them
rather than by repeating them.
"""

import asyncio
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from imgpipe_runtime.mongo import Database
from imgpipe_runtime.outages import is_outage
from imgpipe_schemas import (
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_QUALITY,
    ImageOptions,
    Progress,
    RequestStatus,
    RowProcessed,
    RowSubmitted,
)

log = logging.getLogger(__name__)

REQUESTS, ROWS, DELIVERIES, PUBLICATIONS = "requests", "rows", "deliveries", "publications"
IDEMPOTENCY_KEYS = "idempotency_keys"
# A running upload's counts of rows done and images ok / failed, kept by the assembler with every batch.
LIVE_COUNTS = "live"


class Origin(StrEnum):
    """How a request reached the pipeline: uploaded to ingest, or produced straight to Kafka."""

    UPLOAD = "upload"
    KAFKA = "kafka"


# Every query on a hot path (per row, per batch, per poll, per pass) is served by one of these or by _id,
# on MongoDB and on the embedded database alike. The embedded one uses the first indexed condition of a
# filter in the order written, never an index for a filter with a top-level $or / $and, and scans for
# every find_one_and_update that matches: so those shapes stay off the hot paths.
INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    # Running requests (the reconciler's stalled ones): few, whatever the stack has done.
    REQUESTS: [
        [("status", 1)],
        [("completion_published", 1), ("updated_at", 1)],
        # Retention: finished requests by age, and their tombstones (imgpipe_runtime.retention).
        [("completed_at", 1)],
        [("expired_at", 1)],
        # Finished requests whose webhook delivery is not yet seen (the reconciler).
        [("delivery_pending", 1), ("delivery_pending_since", 1)],
    ],
    # Claims by age (retention) and by expiry, which retention deletes. Not a TTL index: the embedded
    # database's TTL sweep reads the whole collection every minute (measured: every hot query of the
    # database cost three times as much with 100,000 claims stored).
    IDEMPOTENCY_KEYS: [[("created_at", 1)], [("expires_at", 1)]],
    # A request's rows not yet done (the reconciler) or done (progress, completion).
    ROWS: [[("request_id", 1), ("done", 1)]],
    # The notifier's deliveries that are due; a request's deliveries (the status API).
    DELIVERIES: [[("state", 1), ("next_attempt_at", 1)], [("request_id", 1), ("created_at", 1)]],
    # Where a request's rows were published, oldest first (the reconciler).
    PUBLICATIONS: [[("request_id", 1), ("published_at", 1)]],
}


async def ensure_indexes(db: Database) -> None:
    """Creates every index the shared collections' queries need. Each service calls it once at start-up,
    so that no service depends on another having started first; creating an existing index is a no-op."""
    for collection, indexes in INDEXES.items():
        for keys in indexes:
            await db[collection].create_index(keys)


async def ensure_indexes_when_up(db: Database, retry_s: float = 5.0) -> None:
    """ensure_indexes for a faust service's start-up task: the database may still be starting."""
    while True:
        try:
            return await ensure_indexes(db)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("indexes not ensured yet, retrying: %r", exc)
            await asyncio.sleep(retry_s)


def row_id(request_id: str | UUID, row_index: int) -> str:
    """A row's ``_id``. Derived from the request and the row's position, so that every writer (ingest, a
    replayed result, a result that arrives before its row's input) lands on the same document."""
    return f"{request_id}:{row_index}"


def new_request(
    *,
    status: RequestStatus,
    origin: Origin,
    columns: Sequence[str],
    rows_total: int,
    images_total: int,
    webhook_url: str | None,
    now: datetime,
    input_file: str | None = None,
    quality: int | None = None,
    output_format: str | None = None,
    image_options: ImageOptions | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """A request as first stored, without its ``_id`` (the request id). A request produced straight to
    Kafka has no input file, and its encoder options are on each row. Only an upload has live counts:
    it is stored before any of its rows can have results, so counting from zero misses nothing, whereas
    a direct producer's results may arrive before its request. ``owner`` names the API key it was
    uploaded with (a digest, never the key); None for a request anyone may read (see visible_to)."""
    live = {LIVE_COUNTS: {"rows_done": 0, "images_ok": 0, "images_failed": 0}} if origin == Origin.UPLOAD else {}
    return {
        **live,
        # The secret part of the output CSV's name (blobs.output_csv_name).
        "output_token": secrets.token_urlsafe(18),
        "status": status,
        "origin": origin,
        "columns": list(columns),
        "rows_total": rows_total,
        "images_total": images_total,
        "input_file": input_file,
        "output_file": None,
        "webhook_url": webhook_url,
        "quality": quality,
        "output_format": output_format,
        "image_options": stored_options(image_options),
        "owner": owner,
        "created_at": now,
        "updated_at": now,
    }


def stored_options(options: ImageOptions | None) -> dict[str, Any] | None:
    """Image options as a document stores them: only those that differ from their defaults, and None when
    none does, so that a request or row that chose none is stored as it always was."""
    if options is None:
        return None
    return options.model_dump(mode="json", exclude_defaults=True) or None


def image_options(*documents: Mapping[str, Any] | None) -> ImageOptions:
    """The image options of the first of ``documents`` (a row, then its request) that has some; stored
    before there were any, a document has none, which is every option's default."""
    for document in documents:
        if document and document.get("image_options"):
            return ImageOptions.model_validate(document["image_options"])
    return ImageOptions()


def row_event(
    request: Mapping[str, Any],
    row_index: int,
    serial: int,
    product_name: str,
    image_urls: Sequence[str],
    row: Mapping[str, Any] | None = None,
    apparel: bool | None = None,
) -> RowSubmitted:
    """The one builder of a row's event, for ingest's first publication and the reconciler's re-drive: the
    row's encoder and image options where a stored ``row`` has its own (a row produced straight to Kafka),
    else its request's, else the defaults."""
    row = row or {}
    return RowSubmitted(
        request_id=UUID(request["_id"]),
        row_index=row_index,
        serial=serial,
        product_name=product_name,
        image_urls=list(image_urls),
        quality=row.get("quality") or request.get("quality") or DEFAULT_QUALITY,
        output_format=row.get("output_format") or request.get("output_format") or DEFAULT_OUTPUT_FORMAT,
        image_options=image_options(row, request),
        apparel=bool(row.get("apparel", False)) if apparel is None else apparel,
    )


def visible_to(request: Mapping[str, Any], owner: str | None) -> bool:
    """Whether a caller may read the request: its owner may, and so may anyone when either side has no
    owner (a request produced straight to Kafka or stored while no API keys were configured; a caller
    while none are)."""
    return owner is None or request.get("owner") is None or request["owner"] == owner


def new_row(
    request_id: str | UUID,
    row_index: int,
    *,
    serial: int,
    product_name: str,
    image_urls: Sequence[str],
    cells: Sequence[str],
    quality: int | None = None,
    output_format: str | None = None,
    image_options: ImageOptions | None = None,
    apparel: bool = False,
) -> dict[str, Any]:
    """A row's input as first stored, not yet done, without its ``_id`` (see row_id). ``cells`` are the
    input CSV's cells, which the output CSV repeats. An upload's rows take the request's encoder options;
    a row produced straight to Kafka carries its own. ``apparel`` is stored only when true, so that any
    other row is stored as it always was."""
    return {
        **({"apparel": True} if apparel else {}),
        "request_id": str(request_id),
        "row_index": row_index,
        "serial": serial,
        "product_name": product_name,
        "image_urls": list(image_urls),
        "cells": list(cells),
        "quality": quality,
        "output_format": output_format,
        "image_options": stored_options(image_options),
        "done": False,
    }


def row_results(result: RowProcessed, now: datetime) -> dict[str, Any]:
    """The fields a row's results set: what progress counts and the output CSV shows."""
    failed = sum(not image.ok for image in result.images)
    return {
        "done": True,
        "images": [image.model_dump() for image in result.images],
        "images_ok": len(result.images) - failed,
        "images_failed": failed,
        "result_event_id": str(result.event_id),
        "updated_at": now,
    }


def rows_of(request: Mapping[str, Any]) -> dict[str, Any]:
    """The query for the rows that make up a request: input known, within its row count (a direct
    producer may send results, or rows, that the request does not have)."""
    return {"request_id": request["_id"], "cells": {"$exists": True}, "row_index": {"$lt": request["rows_total"]}}


def progress(request: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> Progress:
    """A request's progress, counted from its rows (those rows_of finds): a row is done once its results
    are in. The status API shows it while the request runs; the assembler stores it when it finishes one."""
    done = [row for row in rows if row.get("done")]
    return _counted(
        request, len(done), sum(row["images_ok"] for row in done), sum(row["images_failed"] for row in done)
    )


async def counted_progress(db: Database, request: Mapping[str, Any]) -> Progress:
    """progress() of the rows done so far, summed by the database (a big request's rows are not fetched)."""
    sums = {
        "_id": None,
        "done": {"$sum": 1},
        "images_ok": {"$sum": "$images_ok"},
        "images_failed": {"$sum": "$images_failed"},
    }
    pipeline = [{"$match": {**rows_of(request), "done": True}}, {"$group": sums}]
    groups = await (await db[ROWS].aggregate(pipeline)).to_list()
    done = groups[0] if groups else {"done": 0, "images_ok": 0, "images_failed": 0}
    return _counted(request, done["done"], done["images_ok"], done["images_failed"])


def live_counts(request: Mapping[str, Any]) -> Progress | None:
    """An upload's progress as the assembler keeps it while the request runs (no rows read); None for a
    request without live counts (produced straight to Kafka)."""
    live = request.get(LIVE_COUNTS)
    if live is None:
        return None
    return _counted(request, min(live["rows_done"], request["rows_total"]), live["images_ok"], live["images_failed"])


def _counted(request: Mapping[str, Any], rows_done: int, images_ok: int, images_failed: int) -> Progress:
    return Progress(
        rows_total=request["rows_total"],
        rows_done=rows_done,
        images_total=request["images_total"],
        images_ok=images_ok,
        images_failed=images_failed,
    )


def stored_progress(request: Mapping[str, Any]) -> Progress | None:
    """The progress the assembler stored when it finished the request; None while it runs."""
    return Progress.model_validate(request["progress"]) if request.get("progress") else None


async def request_progress(db: Database, request: Mapping[str, Any]) -> Progress:
    """The status API's progress: as stored once finished, else the live counts of an upload, else
    counted from the rows done so far."""
    return stored_progress(request) or live_counts(request) or await counted_progress(db, request)


async def delivery_recorded(db: Database, webhook_id: str) -> bool:
    """Whether the notifier has recorded a delivery of the completion event ``webhook_id`` (its webhook id)."""
    return await db[DELIVERIES].find_one({"_id": webhook_id}, {"_id": 1}) is not None


async def webhook_deliveries(db: Database, request_id: str) -> list[dict[str, Any]]:
    """Each webhook the notifier sent for the request, oldest first, with its attempts, as the status API
    shows them. The notifier writes these documents (imgpipe_notifier.adapters.deliveries); this is the
    one reader of their fields outside it."""
    cursor = db[DELIVERIES].find(
        {"request_id": request_id}, {"url": 1, "state": 1, "attempts": 1}, sort=[("created_at", 1)]
    )
    return [
        {
            "webhook_id": delivery["_id"],
            "url": delivery["url"],
            "state": delivery["state"],
            "attempts": [
                {"at": attempt["at"].isoformat(), "outcome": attempt["outcome"]} for attempt in delivery["attempts"]
            ],
        }
        async for delivery in cursor
    ]


ROW_OUTCOME_FIELDS = {"_id": 0, "row_index": 1, "serial": 1, "product_name": 1, "done": 1, "images": 1}


async def request_rows(
    db: Database, request: Mapping[str, Any], *, offset: int, limit: int, failed_only: bool = False
) -> tuple[list[dict[str, Any]], bool]:
    """A page of the request's rows (rows_of) in input order, with their results so far, and whether more
    follow; ``failed_only``: the rows with a failed image. A page of all rows is read by its rows' ids (an
    upload's row indexes are 0 … rows_total - 1), never by a scan of the request's rows; the failed rows are
    found by a scan of its done rows, so they are not counted as well."""
    rows = db[ROWS]
    if failed_only:
        query = {**rows_of(request), "done": True, "images_failed": {"$gt": 0}}
        cursor = rows.find(query, ROW_OUTCOME_FIELDS, sort=[("row_index", 1)], skip=offset, limit=limit + 1)
        page = await cursor.to_list()
        return page[:limit], len(page) > limit
    end = min(offset + limit, request["rows_total"])
    ids = [row_id(request["_id"], index) for index in range(offset, end)]
    # _id first: the embedded database uses the first indexed condition, and request_id would read every row.
    page = await rows.find({"_id": {"$in": ids}, **rows_of(request)}, ROW_OUTCOME_FIELDS).to_list() if ids else []
    return sorted(page, key=lambda row: row["row_index"]), end < request["rows_total"]


def new_publication(
    request_id: str, rows: Sequence[int], positions: Sequence[Sequence[int]], now: datetime
) -> dict[str, Any]:
    """Where the row events of ``rows`` (row indexes) were stored in the rows topic: ``positions`` are their
    (partition, offset), in the same order. Lets the reconciler tell a row waiting in the topic from one the
    broker lost. One document per publishing, without its ``_id``: a request's rows can be re-published."""
    return {
        "request_id": str(request_id),
        "published_at": now,
        "rows": list(rows),
        "positions": [[int(partition), int(offset)] for partition, offset in positions],
    }


async def record_publication(
    db: Database, request_id: str, rows: Sequence[int], positions: Sequence[Sequence[int]]
) -> None:
    """Whoever publishes rows records where they went (see new_publication)."""
    await db[PUBLICATIONS].insert_one(new_publication(request_id, rows, positions, datetime.now(UTC)))


async def forget_publications(db: Database, request_id: str) -> None:
    """A finished request is never re-driven: where its rows were published is of no more use."""
    await db[PUBLICATIONS].delete_many({"request_id": str(request_id)})


async def published_positions(db: Database, request_id: str) -> dict[int, tuple[int, int]]:
    """Where each published row of the request was last published: row index to (partition, offset)."""
    latest: dict[int, tuple[int, int]] = {}
    async for publication in db[PUBLICATIONS].find({"request_id": request_id}, sort=[("published_at", 1), ("_id", 1)]):
        for row_index, (partition, offset) in zip(publication["rows"], publication["positions"], strict=True):
            latest[row_index] = (partition, offset)
    return latest
