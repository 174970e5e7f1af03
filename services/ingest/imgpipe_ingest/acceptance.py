"""Accepting an upload's rows after its answer: stored and published a chunk at a time, from the stored
input CSV, so that a 1,000,000-row upload is answered once its file is safe, not once every row is out.

The request records ``rows_accepted`` (rows stored and published, a prefix of the file) and a lease,
``accept_lease_until``, renewed with every chunk. An acceptance cut short (ingest stopped, the broker down)
is resumed from ``rows_accepted`` by whichever ingest first finds its lease run out: the chunk that was in
flight is stored and published again, which changes nothing (a row is stored once by its id, and a row
result counts once, however often its row event is delivered).
"""

import asyncio
import contextlib
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from confluent_kafka import KafkaException

from imgpipe_bus import EventProducer
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.csv_input import ROWS_PER_BATCH, InputRow, Limits, read_rows
from imgpipe_runtime.blobs import BlobStore
from imgpipe_runtime.documents import row_event
from imgpipe_runtime.logs import about_request
from imgpipe_runtime.outages import is_outage
from imgpipe_schemas import RequestAccepted
from imgpipe_schemas.events import MAX_IMAGES_PER_ROW
from imgpipe_schemas.topics import REQUESTS_ACCEPTED, ROWS_SUBMITTED

log = logging.getLogger(__name__)


async def accept_rows(
    request: dict,
    *,
    store: RequestStore,
    blobs: BlobStore,
    producer: EventProducer,
    lease_s: float,
    chunk_rows: int = ROWS_PER_BATCH,
) -> bool:
    """Stores and publishes the request's rows from ``rows_accepted`` on, then marks it PROCESSING; True
    once done. A broker or database outage leaves it for a later resume (False)."""
    request_id = request["_id"]
    try:
        with tempfile.TemporaryFile() as source:
            await _copy_input(blobs, request["input_file"], source)
            await producer.publish(
                REQUESTS_ACCEPTED,
                RequestAccepted(
                    request_id=uuid.UUID(request_id),
                    rows_total=request["rows_total"],
                    images_total=request["images_total"],
                    webhook_url=request.get("webhook_url"),
                ),
            )
            accepted = request.get("rows_accepted", 0)
            # The file passed validation when it was uploaded: every row of it is read.
            limits = Limits(max_rows=request["rows_total"], max_urls_per_row=MAX_IMAGES_PER_ROW)
            async for rows in _row_batches(source, limits, chunk_rows):
                rows = [row for row in rows if row.index >= accepted]
                if not rows:
                    continue
                await store.insert_rows(request_id, rows)
                events = (
                    row_event(request, row.index, row.serial, row.product_name, row.image_urls, apparel=row.apparel)
                    for row in rows
                )
                positions = await producer.publish_many(ROWS_SUBMITTED, events)
                await store.record_publication(request_id, [row.index for row in rows], positions)
                accepted = rows[-1].index + 1
                await store.note_accepted(request_id, accepted, datetime.now(UTC) + timedelta(seconds=lease_s))
    except Exception as exc:
        if not (isinstance(exc, KafkaException) or is_outage(exc)):
            raise
        log.warning("request %s: rows accepted up to a point (%s); the rest is resumed later", request_id, exc)
        return False
    await store.mark_processing(request_id)
    log.info("accepted request %s: %d rows, %d images", request_id, request["rows_total"], request["images_total"])
    return True


async def _copy_input(blobs: BlobStore, name: str, out: BinaryIO) -> None:
    reader = await blobs.open(name)
    if reader is None:
        raise FileNotFoundError(f"the stored input {name} is missing")
    async for chunk in reader.chunks():
        out.write(chunk)
    out.seek(0)


async def _row_batches(source: BinaryIO, limits: Limits, chunk_rows: int) -> AsyncIterator[list[InputRow]]:
    """read_rows, each batch parsed off the event loop."""
    batches = read_rows(source, limits, chunk_rows)
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        yield batch


class Acceptances:
    """The acceptances this ingest runs: one task per upload, started once it is answered, and a periodic
    look for acceptances whose lease ran out (their ingest stopped), which it takes over and resumes."""

    def __init__(
        self,
        *,
        store: RequestStore,
        blobs: BlobStore,
        producer: EventProducer,
        lease_s: float,
        resume_every_s: float,
        chunk_rows: int = ROWS_PER_BATCH,
    ) -> None:
        self._store, self._blobs, self._producer = store, blobs, producer
        self._lease_s, self._resume_every_s, self._chunk_rows = lease_s, resume_every_s, chunk_rows
        self._tasks: set[asyncio.Task] = set()
        self._resumer: asyncio.Task | None = None

    def start(self, request: dict) -> None:
        task = asyncio.create_task(self._accept(request), name=f"accept-{request['_id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, request: dict) -> None:
        with about_request(request["_id"]):
            try:
                await accept_rows(
                    request,
                    store=self._store,
                    blobs=self._blobs,
                    producer=self._producer,
                    lease_s=self._lease_s,
                    chunk_rows=self._chunk_rows,
                )
            except Exception:  # its lease runs out and it is resumed: nothing is lost
                log.exception("request %s: acceptance stopped; it is resumed once its lease runs out", request["_id"])

    def start_resuming(self) -> None:
        self._resumer = asyncio.create_task(self._resume_forever(), name="resume-acceptances")

    async def resume_abandoned(self) -> int:
        """Takes over the acceptances whose lease ran out; returns how many it started."""
        started = 0
        for request in await self._store.abandoned_acceptances(datetime.now(UTC)):
            if await self._store.take_acceptance(request, datetime.now(UTC) + timedelta(seconds=self._lease_s)):
                log.warning("request %s: resuming its acceptance from row %d", request["_id"], request["rows_accepted"])
                self.start(request)
                started += 1
        return started

    async def _resume_forever(self) -> None:
        while True:
            try:
                await self.resume_abandoned()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("acceptances not looked at: %r", exc)
            await asyncio.sleep(self._resume_every_s)

    async def close(self) -> None:
        """Stops every acceptance where it stands: each is resumed later from its last chunk."""
        tasks = [*self._tasks, *([self._resumer] if self._resumer else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
