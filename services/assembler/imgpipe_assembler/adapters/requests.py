"""Request and row documents in MongoDB (defined in imgpipe_runtime.documents), as the assembler (the only
writer of results and progress) sees them."""

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from imgpipe_runtime.documents import (
    LIVE_COUNTS,
    REQUESTS,
    ROWS,
    Origin,
    counted_progress,
    delivery_recorded,
    forget_publications,
    live_counts,
    new_request,
    new_row,
    published_positions,
    record_publication,
    row_id,
    row_results,
    rows_of,
)
from imgpipe_runtime.mongo import only_duplicate_keys
from imgpipe_schemas import FINISHED, Progress, RequestAccepted, RequestStatus, RowProcessed, RowSubmitted

# The embedded database answers an $in on _id in time that grows faster than the list: measured over a
# 100,000-row request, 500 ids a read took 37 s in all, 200 took 17 s, 20 to 50 took 8 s.
ROWS_PER_READ = 40
# The columns of a request produced straight to Kafka: the CSV it would have been uploaded as.
DIRECT_COLUMNS = ["S. No.", "Product Name", "Input Image Urls"]


class ProgressStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db
        self._requests = db[REQUESTS]
        self._rows = db[ROWS]

    async def record_rows(self, results: Sequence[RowProcessed]) -> set[str]:
        """Stores each row's results once. A later result replaces a stored one only when fewer of its
        images failed (a replay that now succeeds); a duplicate changes nothing. A result may arrive before
        its row is known (a request produced straight to Kafka): it is kept, and the row's input joins it
        later. Returns the ids of the requests whose rows changed.

        Three round trips per batch, whatever its size: the rows' stored outcome, the conditional upserts,
        and each changed request's live counts (``documents.live_counts``), which the status API and the
        completion check read instead of counting rows. The results of one request arrive on one
        partition, read by one consumer, so nothing else changes these rows between the read and the write.
        """
        now = datetime.now(UTC)
        best: dict[str, tuple[RowProcessed, dict]] = {}
        for result in results:
            fields = row_results(result, now)
            key = row_id(result.request_id, result.row_index)
            if key not in best or fields["images_failed"] < best[key][1]["images_failed"]:
                best[key] = (result, fields)
        stored = self._rows.find({"_id": {"$in": list(best)}}, {"done": 1, "images_ok": 1, "images_failed": 1})
        before = {row["_id"]: row async for row in stored}
        updates: list[UpdateOne] = []
        deltas: dict[str, dict[str, int]] = {}
        for key, (result, fields) in best.items():
            old = before.get(key, {})
            if old.get("done") and old["images_failed"] <= fields["images_failed"]:
                continue  # a duplicate, or a replay no better than what is stored
            delta = deltas.setdefault(str(result.request_id), {"rows_done": 0, "images_ok": 0, "images_failed": 0})
            delta["rows_done"] += 0 if old.get("done") else 1
            delta["images_ok"] += fields["images_ok"] - (old["images_ok"] if old.get("done") else 0)
            delta["images_failed"] += fields["images_failed"] - (old["images_failed"] if old.get("done") else 0)
            updates.append(
                UpdateOne(
                    # Not done (no images_failed yet), or done with more failed images. Plain conditions
                    # beside _id: a top-level $or makes the embedded database scan every row.
                    {"_id": key, "images_failed": {"$not": {"$lte": fields["images_failed"]}}},
                    {
                        "$set": fields,
                        "$setOnInsert": {"request_id": str(result.request_id), "row_index": result.row_index},
                    },
                    upsert=True,
                )
            )
        if not updates or not await _upsert_new(self._rows, updates):
            return set()
        await self._requests.bulk_write(
            [
                update
                for request_id, delta in deltas.items()
                for update in (
                    UpdateOne(
                        {"_id": request_id},
                        {"$set": {"last_progress_at": now}, "$unset": UNANSWERED_FIELDS},
                    ),
                    # Only counts that started at zero with the request are kept (see new_request).
                    UpdateOne(
                        {"_id": request_id, LIVE_COUNTS: {"$exists": True}},
                        {"$inc": {f"{LIVE_COUNTS}.{name}": value for name, value in delta.items()}},
                    ),
                )
            ],
            ordered=False,
        )
        return set(deltas)

    async def get(self, request_id: str) -> dict | None:
        return await self._requests.find_one({"_id": request_id})

    async def rows_done(self, request: dict) -> int:
        """Rows of the request with both their input and their results, as far as the completion check
        needs: an upload's live count while it runs (an upload's rows are stored before any is published,
        so it counts no result without its row; the build of the output checks it again, row by row),
        else counted."""
        live = live_counts(request)
        if live is not None and request["status"] not in FINISHED:
            return live.rows_done  # the output's build counts the rows it really has (Tally)
        return await self._rows.count_documents({**rows_of(request), "done": True})

    async def recount(self, request: dict) -> None:
        """Sets an upload's live counts from its rows. The counts are written after the rows they count,
        so a crash between the two writes leaves them short: the reconciler recounts a request whose
        rows are all in but which is not finished."""
        if live_counts(request) is None:
            return
        counted = await counted_progress(self._db, request)
        fields = {
            "rows_done": counted.rows_done,
            "images_ok": counted.images_ok,
            "images_failed": counted.images_failed,
        }
        await self._requests.update_one({"_id": request["_id"]}, {"$set": {LIVE_COUNTS: fields}})

    async def iter_rows(self, request: dict, chunk: int = ROWS_PER_READ) -> AsyncIterator[dict]:
        """The rows that make up the request (see rows_of), in input order, ``chunk`` at a time: read by
        their ids (a request's row indexes are 0 … rows_total - 1), which every database serves by the
        ``_id`` index, never by a scan or a sort of the request's rows."""
        for start in range(0, request["rows_total"], chunk):
            ids = [row_id(request["_id"], index) for index in range(start, min(start + chunk, request["rows_total"]))]
            page = await self._rows.find({"_id": {"$in": ids}}).to_list()
            for row in sorted(page, key=lambda row: row["row_index"]):
                if "cells" in row:  # else only its results are known, not its input
                    yield row

    async def rows_not_done(self, request_id: str) -> list[dict]:
        """Without their cells (up to 256 KiB a row): what a re-drive publishes needs only the row's input."""
        return await self._rows.find(
            {"request_id": request_id, "done": False}, {"cells": 0, "images": 0}, sort=[("row_index", 1)]
        ).to_list()

    async def output_stale(self, request: dict) -> bool:
        """True if a row of the finished request changed after its output was built."""
        built = request.get("output_built_at") or request["updated_at"]
        changed = await self._rows.find_one({"request_id": request["_id"], "updated_at": {"$gt": built}}, {"_id": 1})
        return changed is not None

    async def mark_output_built(self, request_id: str) -> None:
        """The stored output is that of the rows as they are now."""
        await self._requests.update_one({"_id": request_id}, {"$set": {"output_built_at": datetime.now(UTC)}})

    async def finish(
        self, request_id: str, status: RequestStatus, output_file: str, progress: Progress, *, update: bool
    ) -> dict | None:
        """Completes an unfinished request, or (``update``) records a finished one's new output. Either
        way a new completion event id is fixed here, so that re-sends of that event keep it."""
        now = datetime.now(UTC)
        condition = {"$in": list(FINISHED)} if update else {"$nin": list(FINISHED)}
        # update_one, then a read: the embedded database's find_one_and_update scans the collection.
        changed = await self._requests.update_one(
            {"_id": request_id, "status": condition},
            {
                "$set": {
                    "status": status,
                    "output_file": output_file,
                    "progress": progress.model_dump(),
                    "completion_event_id": str(uuid.uuid4()),
                    "completion_type": "request.updated" if update else "request.completed",
                    "completion_published": False,
                    **delivery_pending(now),
                    "updated_at": now,
                    "output_built_at": now,
                    **({} if update else {"completed_at": now}),
                }
            },
        )
        return await self.get(request_id) if changed.modified_count else None

    async def mark_completion_published(self, request_id: str, event_id: str) -> None:
        await self._requests.update_one(
            {"_id": request_id, "completion_event_id": event_id}, {"$set": {"completion_published": True}}
        )

    async def undelivered_completions(self, before: datetime, limit: int = 1000) -> list[dict]:
        """Up to ``limit`` finished requests whose completion (or update) was announced before ``before``
        and whose delivery the notifier has not been seen to record (see confirm_delivery). By the flag
        and the time together (one compound index): a range on a field most requests lack is a scan on the
        embedded database, whose index holds them all as null, and the flag alone would read every
        completion of the last stall on every pass."""
        query = {"delivery_pending": True, "delivery_pending_since": {"$lt": _naive(before)}}
        return await self._requests.find(query).limit(limit).to_list()

    async def delivery_recorded(self, request: dict) -> bool:
        return await delivery_recorded(self._db, request["completion_event_id"])

    async def confirm_delivery(self, request_id: str, event_id: str) -> None:
        """No delivery of the completion ``event_id`` is looked for any more."""
        await self._requests.update_one(
            {"_id": request_id, "completion_event_id": event_id}, {"$unset": dict.fromkeys(DELIVERY_PENDING, "")}
        )

    async def await_delivery(self, request_id: str, event_id: str, now: datetime) -> None:
        """The completion ``event_id`` was announced again at ``now``: its delivery is looked for a stall later."""
        await self._requests.update_one(
            {"_id": request_id, "completion_event_id": event_id},
            {"$set": {"delivery_pending_since": now}, "$inc": {"reannounced": 1}},
        )

    # Requests produced straight to Kafka.

    async def register_request(self, accepted: RequestAccepted) -> bool:
        """Stores a request first seen on Kafka; True if it is new. A request that ingest stored (or an
        earlier delivery) is left as it is."""
        now = datetime.now(UTC)
        outcome = await self._requests.update_one(
            {"_id": str(accepted.request_id)},
            {
                "$setOnInsert": new_request(
                    status=RequestStatus.PROCESSING,
                    origin=Origin.KAFKA,
                    columns=DIRECT_COLUMNS,
                    rows_total=accepted.rows_total,
                    images_total=accepted.images_total,
                    webhook_url=accepted.webhook_url,
                    now=now,
                )
            },
            upsert=True,
        )
        return outcome.upserted_id is not None

    async def known(self, request_ids: set[str]) -> dict[str, dict]:
        """Those of ``request_ids`` that are stored, with their origin, row count and status."""
        cursor = self._requests.find({"_id": {"$in": list(request_ids)}}, {"origin": 1, "rows_total": 1, "status": 1})
        return {request["_id"]: request async for request in cursor}

    async def register_rows(self, rows: Sequence[RowSubmitted]) -> set[str]:
        """Stores the input of rows first seen on Kafka, beside results that may already be in; a row
        whose input is known is left as it is. Returns the ids of the requests that gained rows."""
        updates = []
        for row in rows:
            document = new_row(
                row.request_id,
                row.row_index,
                serial=row.serial,
                product_name=row.product_name,
                image_urls=row.image_urls,
                cells=[str(row.serial), row.product_name, ",".join(row.image_urls)],
                quality=row.quality,
                output_format=row.output_format,
                image_options=row.image_options,
                apparel=row.apparel,
            )
            # Results that arrived first keep their ``done``.
            not_done = {"done": document.pop("done")}
            updates.append(
                UpdateOne(
                    {"_id": row_id(row.request_id, row.row_index), "cells": {"$exists": False}},
                    {"$set": document, "$setOnInsert": not_done},
                    upsert=True,
                )
            )
        if not await _upsert_new(self._rows, updates):
            return set()
        return {str(row.request_id) for row in rows}

    # The reconciler's queries.

    async def stalled(self, status: RequestStatus, before: datetime) -> list[dict]:
        """Requests in ``status`` with no progress since ``before``: those in ``status`` are read by its index
        (only running requests are PENDING or PROCESSING), and their time is checked here."""
        before = _naive(before)
        return [
            request
            async for request in self._requests.find({"status": status})
            if _naive(request.get("last_progress_at") or request["created_at"]) < before
        ]

    async def unpublished_completions(self, before: datetime) -> list[dict]:
        """Only a finished request has ``completion_published`` (see finish)."""
        return await self._requests.find({"completion_published": False, "updated_at": {"$lt": before}}).to_list()

    async def rows_known(self, request: dict) -> int:
        """Rows of the request whose input is stored (a direct producer's rows may never have arrived)."""
        return await self._rows.count_documents(rows_of(request))

    async def published_positions(self, request_id: str) -> dict[int, tuple[int, int]]:
        return await published_positions(self._db, request_id)

    async def record_publication(
        self, request_id: str, rows: Sequence[int], positions: Sequence[tuple[int, int]]
    ) -> None:
        await record_publication(self._db, request_id, rows, positions)

    async def forget_publications(self, request_id: str) -> None:
        await forget_publications(self._db, request_id)

    async def note_unanswered(self, request_id: str, since: datetime | None, rows: Sequence[int] = ()) -> None:
        """Which rows of the request were seen unanswered (read by a worker, no result yet), and when
        (None: none are)."""
        await self._requests.update_one({"_id": request_id}, _unanswered_note(since, rows))

    async def count_redrives(self, request_id: str, rows: Sequence[int]) -> None:
        """Counts a round for each of ``rows``: read by their ids, a few at a time (see iter_rows)."""
        for start in range(0, len(rows), ROWS_PER_READ):
            ids = [row_id(request_id, index) for index in rows[start : start + ROWS_PER_READ]]
            await self._rows.update_many({"_id": {"$in": ids}}, {"$inc": {"redrives": 1}})

    async def mark_redriven(
        self, request_id: str, now: datetime, unanswered: Sequence[int] = (), *, rows_missing: bool = False
    ) -> None:
        """Counts a pass that re-drove rows of the request (``reconcile_rounds``, shown to operators), or
        with ``rows_missing`` a stall of a request whose rows a direct producer never sent (the rounds it
        gives up after); ``unanswered`` are the rows still unanswered that were not published again:
        noted as seen now."""
        change = _unanswered_note(now, unanswered)
        change.setdefault("$set", {}).update(status=RequestStatus.PROCESSING, last_progress_at=now)
        change["$inc"] = {"missing_rows_stalls" if rows_missing else "reconcile_rounds": 1}
        await self._requests.update_one({"_id": request_id, "status": {"$nin": list(FINISHED)}}, change)


UNANSWERED_FIELDS = {"unanswered_since": "", "unanswered_rows": ""}
DELIVERY_PENDING = ("delivery_pending", "delivery_pending_since", "reannounced")


def delivery_pending(now: datetime) -> dict:
    """A new completion's delivery is looked for from ``now`` (the reconciler's undelivered_completions)."""
    return {"delivery_pending": True, "delivery_pending_since": now, "reannounced": 0}


def _naive(moment: datetime) -> datetime:
    """A stored time as UTC without its zone: MongoDB gives them back naive, and comparisons need one kind."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _unanswered_note(since: datetime | None, rows: Sequence[int]) -> dict:
    """The update that notes ``rows`` as unanswered since ``since``, or, without both, clears the note."""
    if since and rows:
        return {"$set": {"unanswered_since": since, "unanswered_rows": list(rows)}}
    return {"$unset": dict(UNANSWERED_FIELDS)}


async def _upsert_new(collection, updates: list[UpdateOne]) -> int:
    """Runs conditional upserts; one whose condition fails on an existing document is a no-op (it surfaces
    as a duplicate key). Returns how many documents were inserted or changed."""
    try:
        outcome = (await collection.bulk_write(updates, ordered=False)).bulk_api_result
    except BulkWriteError as exc:
        outcome = exc.details
        if not only_duplicate_keys(outcome):
            raise
    return outcome["nModified"] + outcome["nUpserted"]
