"""Row results and the requests and rows produced straight to Kafka, as the assembler stores them: it is
the only writer of results and of the progress they make."""

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import UpdateOne

# The embedded database answers an $in on _id in time that grows faster than the list: measured over a
# 100,000-row request, 500 ids a read took 37 s in all, 200 took 17 s, 20 to 50 took 8 s.
from imgpipe_assembler.adapters.collections import (
    UNANSWERED_FIELDS,
    Collections,
    upsert_new,
)
from imgpipe_runtime.documents import (
    LIVE_COUNTS,
    Origin,
    new_request,
    new_row,
    record_publication,
    row_id,
    row_results,
)
from imgpipe_schemas import CSV_COLUMNS, RequestAccepted, RequestStatus, RowProcessed, RowSubmitted

# The columns of a request produced straight to Kafka: the CSV it would have been uploaded as.
DIRECT_COLUMNS = list(CSV_COLUMNS)


class ResultStore(Collections):
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
        if not updates or not await upsert_new(self._rows, updates):
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
        if not await upsert_new(self._rows, updates):
            return set()
        return {str(row.request_id) for row in rows}

    async def record_publication(
        self, request_id: str, rows: Sequence[int], positions: Sequence[tuple[int, int]]
    ) -> None:
        await record_publication(self._db, request_id, rows, positions)
