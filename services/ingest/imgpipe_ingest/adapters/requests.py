"""The request and row documents in MongoDB (defined in imgpipe_runtime.documents), as ingest writes and
reads them."""

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from imgpipe_ingest.csv_input import CsvSummary, InputRow
from imgpipe_runtime import documents
from imgpipe_runtime.documents import REQUESTS, ROWS, Origin, new_request, new_row, row_id
from imgpipe_runtime.mongo import only_duplicate_keys
from imgpipe_schemas import ImageOptions, Progress, RequestStatus

ROW_BATCH = 500


class RequestStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db
        self._requests = db[REQUESTS]
        self._rows = db[ROWS]

    async def insert_rows(self, request_id: str, rows: Sequence[InputRow]) -> None:
        """Stores rows of a request being accepted: the stored input the pipeline can always re-drive from.
        A row stored already (a resumed acceptance stores its last chunk again) is left as it is."""
        for start in range(0, len(rows), ROW_BATCH):
            await _insert_new(
                self._rows,
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
                            apparel=row.apparel,
                        ),
                    }
                    for row in rows[start : start + ROW_BATCH]
                ],
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
        image_options: ImageOptions | None = None,
        owner: str | None = None,
        accept_lease_until: datetime | None = None,
    ) -> dict:
        """Stores the request as PENDING, none of its rows accepted yet; its acceptance is leased to the
        caller until ``accept_lease_until``. Returns it."""
        request = {
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
                image_options=image_options,
                owner=owner,
            ),
            "rows_accepted": 0,
            "accept_lease_until": accept_lease_until or datetime.now(UTC),
        }
        await self._requests.insert_one(request)
        return request

    async def delete_request(self, request_id: str) -> None:
        """Withdraws a request stored moments ago, before any of its rows was."""
        await self._requests.delete_one({"_id": request_id})

    async def note_accepted(self, request_id: str, rows_accepted: int, lease_until: datetime) -> None:
        """The first ``rows_accepted`` rows are stored and published; the lease is renewed, and so is the
        request's progress, so that the reconciler leaves a request being accepted alone."""
        now = datetime.now(UTC)
        await self._requests.update_one(
            {"_id": request_id},
            {"$set": {"rows_accepted": rows_accepted, "accept_lease_until": lease_until, "last_progress_at": now}},
        )

    async def abandoned_acceptances(self, now: datetime) -> list[dict]:
        """Requests whose acceptance is unfinished and whose lease ran out (read by the status index:
        only running requests are PENDING or PROCESSING)."""
        found = []
        for status in (RequestStatus.PENDING, RequestStatus.PROCESSING):
            async for request in self._requests.find({"status": status}):
                if "rows_accepted" not in request or request["accept_lease_until"] >= now:
                    continue  # produced straight to Kafka, or its acceptance is under way
                # PENDING with every row accepted: stopped before it was marked PROCESSING.
                if request["rows_accepted"] < request["rows_total"] or status == RequestStatus.PENDING:
                    found.append(request)
        return found

    async def take_acceptance(self, request: dict, lease_until: datetime) -> bool:
        """Takes the lease of an abandoned acceptance, unless another ingest took it first."""
        taken = await self._requests.update_one(
            {"_id": request["_id"], "accept_lease_until": request["accept_lease_until"]},
            {"$set": {"accept_lease_until": lease_until}},
        )
        return bool(taken.modified_count)

    async def record_publication(
        self, request_id: str, rows: Sequence[int], positions: Sequence[tuple[int, int]]
    ) -> None:
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


async def _insert_new(collection: AsyncCollection, documents: list[dict]) -> None:
    """Inserts the documents, leaving those whose _id is stored already as they are."""
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        if not only_duplicate_keys(exc.details):
            raise
