"""The reconciler's queries: requests without progress, rows not done and where they were published,
completions not announced or not delivered."""

from collections.abc import Sequence
from datetime import datetime

# The embedded database answers an $in on _id in time that grows faster than the list: measured over a
# 100,000-row request, 500 ids a read took 37 s in all, 200 took 17 s, 20 to 50 took 8 s.
from imgpipe_assembler.adapters.collections import (
    DELIVERY_PENDING,
    ROWS_PER_READ,
    Collections,
    as_naive_utc,
    unanswered_note,
)
from imgpipe_runtime.documents import (
    LIVE_COUNTS,
    counted_progress,
    delivery_recorded,
    live_counts,
    published_positions,
    row_id,
    rows_of,
)
from imgpipe_schemas import FINISHED, RequestStatus


class StallStore(Collections):
    async def stalled(self, status: RequestStatus, before: datetime) -> list[dict]:
        """Requests in ``status`` with no progress since ``before``: those in ``status`` are read by its index
        (only running requests are PENDING or PROCESSING), and their time is checked here."""
        before = as_naive_utc(before)
        return [
            request
            async for request in self._requests.find({"status": status})
            if as_naive_utc(request.get("last_progress_at") or request["created_at"]) < before
        ]

    async def unpublished_completions(self, before: datetime) -> list[dict]:
        """Only a finished request has ``completion_published`` (see finish)."""
        return await self._requests.find({"completion_published": False, "updated_at": {"$lt": before}}).to_list()

    async def undelivered_completions(self, before: datetime, limit: int = 1000) -> list[dict]:
        """Up to ``limit`` finished requests whose completion (or update) was announced before ``before``
        and whose delivery the notifier has not been seen to record (see confirm_delivery). By the flag
        and the time together (one compound index): a range on a field most requests lack is a scan on the
        embedded database, whose index holds them all as null, and the flag alone would read every
        completion of the last stall on every pass."""
        query = {"delivery_pending": True, "delivery_pending_since": {"$lt": as_naive_utc(before)}}
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

    async def rows_not_done(self, request_id: str) -> list[dict]:
        """Without their cells (up to 256 KiB a row): what a re-drive publishes needs only the row's input."""
        return await self._rows.find(
            {"request_id": request_id, "done": False}, {"cells": 0, "images": 0}, sort=[("row_index", 1)]
        ).to_list()

    async def rows_known(self, request: dict) -> int:
        """Rows of the request whose input is stored (a direct producer's rows may never have arrived)."""
        return await self._rows.count_documents(rows_of(request))

    async def published_positions(self, request_id: str) -> dict[int, tuple[int, int]]:
        return await published_positions(self._db, request_id)

    async def note_unanswered(self, request_id: str, since: datetime | None, rows: Sequence[int] = ()) -> None:
        """Which rows of the request were seen unanswered (read by a worker, no result yet), and when
        (None: none are)."""
        await self._requests.update_one({"_id": request_id}, unanswered_note(since, rows))

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
        change = unanswered_note(now, unanswered)
        change.setdefault("$set", {}).update(status=RequestStatus.PROCESSING, last_progress_at=now)
        change["$inc"] = {"missing_rows_stalls" if rows_missing else "reconcile_rounds": 1}
        await self._requests.update_one({"_id": request_id, "status": {"$nin": list(FINISHED)}}, change)

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
