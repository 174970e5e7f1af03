"""The assembler's adapters in memory, with the conditions of the MongoDB ones, and one test's request
wired to them: for the tests of completion and of the assembler's metrics."""

import asyncio
import copy
import csv
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, NoReturn, cast

from imgpipe_assembler.handlers import Adapters, complete_if_done, record_results
from imgpipe_runtime.blobs import output_csv_name
from imgpipe_runtime.documents import Origin, new_request, new_row, row_id, row_results
from imgpipe_schemas import (
    FINISHED,
    ImageResult,
    Progress,
    RequestAccepted,
    RequestCompleted,
    RequestStatus,
    RowProcessed,
    RowSubmitted,
)
from imgpipe_schemas.topics import REQUESTS_COMPLETED
from tests.support.bus_fakes import RecordingPublisher

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
COLUMNS = ["S. No.", "Product Name", "Input Image Urls"]
Document = dict[str, Any]


class NotUsedHere:
    """The store's jobs that the completion tests never reach, present so that the fake is a whole Store."""

    def _not_used(self) -> NoReturn:
        raise AssertionError("not used by these tests")

    async def register_request(self, accepted: RequestAccepted) -> bool:
        self._not_used()

    async def known(self, request_ids: set[str]) -> dict[str, Document]:
        self._not_used()

    async def register_rows(self, rows: Sequence[RowSubmitted]) -> set[str]:
        self._not_used()

    async def record_publication(
        self, request_id: str, rows: Sequence[int], positions: Sequence[tuple[int, int]]
    ) -> None:
        self._not_used()

    async def stalled(self, status: RequestStatus, before: datetime) -> list[Document]:
        self._not_used()

    async def unpublished_completions(self, before: datetime) -> list[Document]:
        self._not_used()

    async def undelivered_completions(self, before: datetime, limit: int = 1000) -> list[Document]:
        self._not_used()

    async def delivery_recorded(self, request: Document) -> bool:
        self._not_used()

    async def confirm_delivery(self, request_id: str, event_id: str) -> None:
        self._not_used()

    async def await_delivery(self, request_id: str, event_id: str, now: datetime) -> None:
        self._not_used()

    async def rows_not_done(self, request_id: str) -> list[Document]:
        self._not_used()

    async def rows_known(self, request: Document) -> int:
        self._not_used()

    async def published_positions(self, request_id: str) -> dict[int, tuple[int, int]]:
        self._not_used()

    async def note_unanswered(self, request_id: str, since: datetime | None, rows: Sequence[int] = ()) -> None:
        self._not_used()

    async def count_redrives(self, request_id: str, rows: Sequence[int]) -> None:
        self._not_used()

    async def mark_redriven(
        self, request_id: str, now: datetime, unanswered: Sequence[int] = (), *, rows_missing: bool = False
    ) -> None:
        self._not_used()

    async def recount(self, request: Document) -> None:
        self._not_used()


class FakeProgressStore(NotUsedHere):
    """ProgressStore's completion queries over dicts, with the conditions of the MongoDB ones (rows_of, and
    the replace-only-if-fewer-failed rule of record_rows). A write counter stands for the clock that
    output_stale compares. Typed as the service's Store: a fake that drifts from it fails `make check`."""

    def __init__(self) -> None:
        self.request_documents: dict[str, dict] = {}
        self.row_documents: dict[str, dict] = {}
        self.writes = 0
        self.forgotten: list[str] = []

    async def record_rows(self, results: Sequence[RowProcessed]) -> set[str]:
        changed = set()
        for result in results:
            fields = row_results(result, NOW)
            key = row_id(result.request_id, result.row_index)
            row = self.row_documents.get(key)
            if row is not None and row["done"] and row["images_failed"] <= fields["images_failed"]:
                continue
            if row is None:
                row = self.row_documents[key] = {"request_id": str(result.request_id), "row_index": result.row_index}
            self.writes += 1
            row.update(fields, written=self.writes)
            changed.add(str(result.request_id))
        return changed

    async def output_stale(self, request: dict) -> bool:
        built = request.get("output_built", 0)
        return any(
            row.get("written", 0) > built for row in self.row_documents.values() if row["request_id"] == request["_id"]
        )

    async def mark_output_built(self, request_id: str) -> None:
        self.request_documents[request_id]["output_built"] = self.writes

    async def get(self, request_id: str) -> dict | None:
        return copy.deepcopy(self.request_documents.get(request_id))

    def _rows_of(self, request: dict) -> list[dict]:
        return sorted(
            (
                row
                for row in self.row_documents.values()
                if row["request_id"] == request["_id"] and "cells" in row and row["row_index"] < request["rows_total"]
            ),
            key=lambda row: row["row_index"],
        )

    async def rows_done(self, request: dict) -> int:
        return sum(row["done"] for row in self._rows_of(request))

    async def rows(self, request: dict) -> list[dict]:
        return copy.deepcopy(self._rows_of(request))

    async def iter_rows(self, request: dict, chunk: int = 40) -> AsyncIterator[Document]:
        for row in copy.deepcopy(self._rows_of(request)):
            yield row

    async def finish(
        self, request_id: str, status: RequestStatus, output_file: str, progress: Progress, *, update: bool
    ) -> dict | None:
        request = self.request_documents[request_id]
        if (request["status"] in FINISHED) != update:
            return None
        request.update(
            status=status,
            output_file=output_file,
            progress=progress.model_dump(),
            completion_event_id=str(uuid.uuid4()),
            completion_type="request.updated" if update else "request.completed",
            completion_published=False,
            output_built=self.writes,
        )
        return copy.deepcopy(request)

    async def forget_publications(self, request_id: str) -> None:
        self.forgotten.append(request_id)

    async def mark_completion_published(self, request_id: str, event_id: str) -> None:
        request = self.request_documents[request_id]
        if request["completion_event_id"] == event_id:
            request["completion_published"] = True


class FakeBlobs:
    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes, str]] = []

    async def put(self, name: str, data: bytes | IO[bytes], content_type: str) -> None:
        await asyncio.sleep(0)  # lets a concurrent delivery run, as a real write would
        self.puts.append((name, data if isinstance(data, bytes) else data.read(), content_type))

    async def open(self, name: str) -> "StoredBlob | None":
        stored = [(data, kind) for put_name, data, kind in self.puts if put_name == name]
        return StoredBlob(name, stored[-1][1], len(stored[-1][0]), stored[-1][0]) if stored else None

    async def delete_prefix(self, prefix: str) -> int:
        before = len(self.puts)
        self.puts = [put for put in self.puts if not put[0].startswith(prefix)]
        return before - len(self.puts)

    def writer(self) -> None:
        return None

    def url(self, name: str) -> None:
        return None


@dataclass(frozen=True)
class StoredBlob:
    name: str
    content_type: str
    length: int
    data: bytes

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.data


class Assembler:
    """The adapters of one test, and the handlers called with them."""

    def __init__(self, rows: int, *, stored_rows: int | None = None, origin: Origin = Origin.UPLOAD) -> None:
        self.request_id = str(uuid.uuid4())
        self.store, self.blobs, self.producer = FakeProgressStore(), FakeBlobs(), RecordingPublisher()
        self.store.request_documents[self.request_id] = {
            "_id": self.request_id,
            **new_request(
                status=RequestStatus.PROCESSING,
                origin=origin,
                columns=COLUMNS,
                rows_total=rows,
                images_total=rows,
                webhook_url="http://hooks.test/h",
                now=NOW,
            ),
        }
        for index in range(rows if stored_rows is None else stored_rows):
            cells = [str(index + 1), f"P{index}", f"http://in/{index}"]
            self.store.row_documents[row_id(self.request_id, index)] = new_row(
                self.request_id, index, serial=index + 1, product_name=f"P{index}", image_urls=[cells[2]], cells=cells
            )

    @property
    def adapters(self) -> Adapters:
        return Adapters(store=self.store, blobs=self.blobs, producer=self.producer, public_base_url="http://api")

    async def deliver(self, *results: RowProcessed) -> None:
        await record_results(list(results), self.adapters)

    async def complete(self, **options) -> None:
        await complete_if_done(self.request_id, self.adapters, **options)

    def result(self, row: int, ok: bool = True) -> RowProcessed:
        image = (
            ImageResult(source_url=f"http://in/{row}", output_url=f"http://out/{row}")
            if ok
            else ImageResult(source_url=f"http://in/{row}", error_code="http_404", error_message="gone")
        )
        return RowProcessed(request_id=uuid.UUID(self.request_id), row_index=row, images=[image])

    @property
    def request(self) -> dict:
        return self.store.request_documents[self.request_id]

    @property
    def events(self) -> list[RequestCompleted]:
        assert {topic for topic, _ in self.producer.published} <= {REQUESTS_COMPLETED}
        events = [event for _, event in self.producer.published]
        assert all(isinstance(event, RequestCompleted) for event in events)
        return cast(list[RequestCompleted], events)

    def output_table(self) -> list[list[str]]:
        name, data, content_type = self.blobs.puts[-1]
        assert (name, content_type) == (output_csv_name(self.request_id, self.request["output_token"]), "text/csv")
        return list(csv.reader(io.StringIO(data.decode())))
