"""Request and row documents in MongoDB, as the assembler (the only writer of progress) sees them."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_schemas import ImageResult, Progress, RowProcessed

PENDING, PROCESSING, SUCCESS, FAILED = "PENDING", "PROCESSING", "SUCCESS", "FAILED"
FINISHED = (SUCCESS, FAILED)


class ProgressStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._requests = db["requests"]
        self._rows = db["rows"]

    async def record_rows(self, results: Sequence[RowProcessed]) -> set[str]:
        """Stores each row's results once. A later result replaces a stored one only when fewer of its
        images failed (a replay that now succeeds); a duplicate changes nothing. Returns the ids of the
        requests whose rows changed."""
        now = datetime.now(UTC)
        updates = []
        for result in results:
            failed = sum(not image.ok for image in result.images)
            updates.append(
                UpdateOne(
                    {
                        "_id": f"{result.request_id}:{result.row_index}",
                        "$or": [{"done": False}, {"images_failed": {"$gt": failed}}],
                    },
                    {
                        "$set": {
                            "done": True,
                            "images": [image.model_dump() for image in result.images],
                            "images_ok": len(result.images) - failed,
                            "images_failed": failed,
                            "result_event_id": str(result.event_id),
                            "updated_at": now,
                        }
                    },
                )
            )
        outcome = await self._rows.bulk_write(updates, ordered=False)
        if not outcome.modified_count:
            return set()
        applied = self._rows.find(
            {"result_event_id": {"$in": [str(result.event_id) for result in results]}}, {"request_id": 1}
        )
        changed = {row["request_id"] async for row in applied}
        await self._requests.update_many({"_id": {"$in": list(changed)}}, {"$set": {"last_progress_at": now}})
        return changed

    async def get(self, request_id: str) -> dict | None:
        return await self._requests.find_one({"_id": request_id})

    async def rows_done(self, request_id: str) -> int:
        return await self._rows.count_documents({"request_id": request_id, "done": True})

    async def rows(self, request_id: str) -> list[tuple[list[str], list[ImageResult]]]:
        cursor = self._rows.find({"request_id": request_id}, sort=[("row_index", 1)])
        return [
            (row["cells"], [ImageResult.model_validate(image) for image in row.get("images", [])])
            async for row in cursor
        ]

    async def rows_not_done(self, request_id: str) -> list[dict]:
        return await self._rows.find({"request_id": request_id, "done": False}, sort=[("row_index", 1)]).to_list()

    async def finish(
        self, request_id: str, status: str, output_file: str, progress: Progress, *, update: bool
    ) -> dict | None:
        """Completes an unfinished request, or (``update``) records a finished one's new output. Either
        way a new completion event id is fixed here, so that re-sends of that event keep it."""
        now = datetime.now(UTC)
        condition = {"$in": list(FINISHED)} if update else {"$nin": list(FINISHED)}
        return await self._requests.find_one_and_update(
            {"_id": request_id, "status": condition},
            {
                "$set": {
                    "status": status,
                    "output_file": output_file,
                    "progress": progress.model_dump(),
                    "completion_event_id": str(uuid.uuid4()),
                    "completion_type": "request.updated" if update else "request.completed",
                    "completion_published": False,
                    "updated_at": now,
                    **({} if update else {"completed_at": now}),
                }
            },
            return_document=True,
        )

    async def mark_completion_published(self, request_id: str, event_id: str) -> None:
        await self._requests.update_one(
            {"_id": request_id, "completion_event_id": event_id}, {"$set": {"completion_published": True}}
        )

    # The reconciler's queries.

    async def stalled(self, status: str, before: datetime) -> list[dict]:
        """Requests in ``status`` with no progress since ``before``."""
        return await self._requests.find(
            {
                "status": status,
                "$or": [
                    {"last_progress_at": {"$lt": before}},
                    {"last_progress_at": {"$exists": False}, "created_at": {"$lt": before}},
                ],
            }
        ).to_list()

    async def unpublished_completions(self, before: datetime) -> list[dict]:
        return await self._requests.find(
            {"status": {"$in": list(FINISHED)}, "completion_published": False, "updated_at": {"$lt": before}}
        ).to_list()

    async def mark_redriven(self, request_id: str, now: datetime) -> None:
        await self._requests.update_one(
            {"_id": request_id, "status": {"$nin": list(FINISHED)}},
            {"$set": {"status": PROCESSING, "last_progress_at": now}, "$inc": {"reconcile_rounds": 1}},
        )
