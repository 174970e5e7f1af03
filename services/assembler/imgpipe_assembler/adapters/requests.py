"""Request and row documents in MongoDB, as the assembler (the only writer of progress) sees them."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_schemas import ImageResult, Progress, RowProcessed

SUCCESS = "SUCCESS"
UNFINISHED = ("PENDING", "PROCESSING")


class ProgressStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._requests = db["requests"]
        self._rows = db["rows"]

    async def record_rows(self, results: Sequence[RowProcessed]) -> int:
        """Stores each row's results once: a row already done is left as it is. Returns rows newly done."""
        now = datetime.now(UTC)
        updates = [
            UpdateOne(
                {"_id": f"{result.request_id}:{result.row_index}", "done": False},
                {
                    "$set": {
                        "done": True,
                        "images": [image.model_dump() for image in result.images],
                        "images_ok": sum(image.ok for image in result.images),
                        "images_failed": sum(not image.ok for image in result.images),
                        "result_event_id": str(result.event_id),
                        "updated_at": now,
                    }
                },
            )
            for result in results
        ]
        outcome = await self._rows.bulk_write(updates, ordered=False)
        return outcome.modified_count

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

    async def mark_success(self, request_id: str, output_file: str, progress: Progress) -> dict | None:
        """PENDING/PROCESSING → SUCCESS with a completion event id fixed once, so re-sends keep it."""
        now = datetime.now(UTC)
        return await self._requests.find_one_and_update(
            {"_id": request_id, "status": {"$in": list(UNFINISHED)}},
            {
                "$set": {
                    "status": SUCCESS,
                    "output_file": output_file,
                    "progress": progress.model_dump(),
                    "completion_event_id": str(uuid.uuid4()),
                    "completion_published": False,
                    "completed_at": now,
                    "updated_at": now,
                }
            },
            return_document=True,
        )

    async def mark_completion_published(self, request_id: str) -> None:
        await self._requests.update_one({"_id": request_id}, {"$set": {"completion_published": True}})
