"""The request and row documents in MongoDB, as ingest writes and reads them."""

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_ingest.csv_input import CsvSummary, InputRow
from imgpipe_schemas import Progress

PENDING, PROCESSING, SUCCESS, FAILED = "PENDING", "PROCESSING", "SUCCESS", "FAILED"
ROW_BATCH = 500


class RequestStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._requests = db["requests"]
        self._rows = db["rows"]
        self._deliveries = db["deliveries"]

    async def insert_rows(self, request_id: str, rows: Sequence[InputRow]) -> None:
        """Stores rows of a request being accepted: the stored input the pipeline can always re-drive from."""
        for start in range(0, len(rows), ROW_BATCH):
            await self._rows.insert_many(
                [
                    {
                        "_id": f"{request_id}:{row.index}",
                        "request_id": request_id,
                        "row_index": row.index,
                        "serial": row.serial,
                        "product_name": row.product_name,
                        "image_urls": row.image_urls,
                        "cells": row.cells,
                        "done": False,
                    }
                    for row in rows[start : start + ROW_BATCH]
                ],
                ordered=False,
            )

    async def insert_request(
        self,
        request_id: str,
        upload: CsvSummary,
        *,
        input_file: str,
        webhook_url: str | None,
        quality: int,
        output_format: str,
    ) -> None:
        """Stores the request as PENDING, once its rows are stored."""
        now = datetime.now(UTC)
        await self._requests.insert_one(
            {
                "_id": request_id,
                "status": PENDING,
                "origin": "upload",
                "columns": upload.columns,
                "rows_total": upload.rows_total,
                "images_total": upload.images_total,
                "input_file": input_file,
                "output_file": None,
                "webhook_url": webhook_url,
                "quality": quality,
                "output_format": output_format,
                "created_at": now,
                "updated_at": now,
            }
        )

    async def mark_processing(self, request_id: str) -> None:
        """PENDING → PROCESSING; a request the assembler already finished keeps its status."""
        await self._requests.update_one(
            {"_id": request_id, "status": PENDING},
            {"$set": {"status": PROCESSING, "updated_at": datetime.now(UTC)}},
        )

    async def get(self, request_id: str) -> dict | None:
        return await self._requests.find_one({"_id": request_id})

    async def progress(self, request: dict) -> Progress:
        if request.get("progress"):
            return Progress.model_validate(request["progress"])
        pipeline = [
            {"$match": {"request_id": request["_id"], "done": True}},
            {
                "$group": {
                    "_id": None,
                    "rows_done": {"$sum": 1},
                    "images_ok": {"$sum": "$images_ok"},
                    "images_failed": {"$sum": "$images_failed"},
                }
            },
        ]
        done = {"rows_done": 0, "images_ok": 0, "images_failed": 0}
        async for group in await self._rows.aggregate(pipeline):
            done = group
        return Progress(
            rows_total=request["rows_total"],
            images_total=request["images_total"],
            rows_done=done["rows_done"],
            images_ok=done["images_ok"],
            images_failed=done["images_failed"],
        )

    async def webhook_deliveries(self, request_id: str) -> list[dict]:
        """Each webhook sent for the request, oldest first, with its attempts."""
        cursor = self._deliveries.find(
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
