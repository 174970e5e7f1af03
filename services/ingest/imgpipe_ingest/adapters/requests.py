"""The request and row documents in MongoDB (defined in imgpipe_runtime.documents), as ingest writes and
reads them."""

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_ingest.csv_input import CsvSummary, InputRow
from imgpipe_runtime import documents
from imgpipe_runtime.documents import REQUESTS, ROWS, Origin, new_request, new_row, row_id
from imgpipe_schemas import Progress, RequestStatus

ROW_BATCH = 500


class RequestStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db
        self._requests = db[REQUESTS]
        self._rows = db[ROWS]

    async def insert_rows(self, request_id: str, rows: Sequence[InputRow]) -> None:
        """Stores rows of a request being accepted: the stored input the pipeline can always re-drive from."""
        for start in range(0, len(rows), ROW_BATCH):
            await self._rows.insert_many(
                [
                    {
                        "_id": row_id(request_id, row.index),
                        **new_row(
                            request_id,
                            row.index,
                            serial=row.serial,
                            product_name=row.product_name,
                            image_urls=row.image_urls,
                            cells=row.cells,
                        ),
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
        owner: str | None = None,
    ) -> None:
        """Stores the request as PENDING, once its rows are stored."""
        await self._requests.insert_one(
            {
                "_id": request_id,
                **new_request(
                    status=RequestStatus.PENDING,
                    origin=Origin.UPLOAD,
                    columns=upload.columns,
                    rows_total=upload.rows_total,
                    images_total=upload.images_total,
                    webhook_url=webhook_url,
                    now=datetime.now(UTC),
                    input_file=input_file,
                    quality=quality,
                    output_format=output_format,
                    owner=owner,
                ),
            }
        )

    async def record_publication(self, request_id: str, rows: Sequence[int], positions: Sequence[tuple[int, int]]) -> None:
        await documents.record_publication(self._db, request_id, rows, positions)

    async def mark_processing(self, request_id: str) -> None:
        """PENDING → PROCESSING; a request the assembler already finished keeps its status."""
        await self._requests.update_one(
            {"_id": request_id, "status": RequestStatus.PENDING},
            {"$set": {"status": RequestStatus.PROCESSING, "updated_at": datetime.now(UTC)}},
        )

    async def get(self, request_id: str) -> dict | None:
        return await self._requests.find_one({"_id": request_id})

    async def progress(self, request: dict) -> Progress:
        """As stored once the request finished, else counted from its rows done so far, as the assembler counts."""
        return await documents.request_progress(self._db, request)

    async def rows(self, request: dict, *, offset: int, limit: int, failed_only: bool) -> tuple[list[dict], bool]:
        """A page of the request's rows with their results so far, and whether more follow."""
        return await documents.request_rows(self._db, request, offset=offset, limit=limit, failed_only=failed_only)

    async def webhook_deliveries(self, request_id: str) -> list[dict]:
        """The notifier's webhooks for the request, oldest first, with their attempts."""
        return await documents.webhook_deliveries(self._db, request_id)
