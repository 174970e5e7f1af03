"""What completing a request reads and writes: its rows in input order, its finish, its announcement."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

# The embedded database answers an $in on _id in time that grows faster than the list: measured over a
# 100,000-row request, 500 ids a read took 37 s in all, 200 took 17 s, 20 to 50 took 8 s.
from imgpipe_assembler.adapters.collections import (
    ROWS_PER_READ,
    Collections,
    delivery_pending,
)
from imgpipe_runtime.documents import (
    forget_publications,
    live_counts,
    row_id,
    rows_of,
)
from imgpipe_schemas import FINISHED, Progress, RequestStatus


class CompletionStore(Collections):
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

    async def forget_publications(self, request_id: str) -> None:
        await forget_publications(self._db, request_id)
