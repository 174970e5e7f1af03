"""When the assembler completes a request, and what it announces, against in-memory adapters."""

import asyncio
import copy
import csv
import io
import typing
import uuid
from datetime import UTC, datetime

import pytest

from imgpipe_assembler.handlers import Adapters, complete_if_done, outcome, record_results, unprocessed_results
from imgpipe_runtime.blobs import output_csv_name
from imgpipe_runtime.documents import Origin, new_request, new_row, row_id, row_results
from imgpipe_schemas import FINISHED, ImageResult, RequestCompleted, RequestStatus, RowProcessed
from imgpipe_schemas.topics import REQUESTS_COMPLETED

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
COLUMNS = ["S. No.", "Product Name", "Input Image Urls"]


class FakeProgressStore:
    """ProgressStore's completion queries over dicts, with the conditions of the MongoDB ones (rows_of, and
    the replace-only-if-fewer-failed rule of record_rows). A write counter stands for the clock that
    output_stale compares."""

    def __init__(self) -> None:
        self.request_documents: dict[str, dict] = {}
        self.row_documents: dict[str, dict] = {}
        self.writes = 0
        self.forgotten: list[str] = []

    async def record_rows(self, results) -> set[str]:
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

    async def iter_rows(self, request: dict):
        for row in copy.deepcopy(self._rows_of(request)):
            yield row

    async def finish(self, request_id, status, output_file, progress, *, update: bool) -> dict | None:
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

    async def put(self, name: str, data, content_type: str) -> None:
        await asyncio.sleep(0)  # lets a concurrent delivery run, as a real write would
        self.puts.append((name, data if isinstance(data, bytes) else data.read(), content_type))

    async def open(self, name: str):
        stored = [data for put_name, data, _ in self.puts if put_name == name]
        if not stored:
            return None

        class Reader:
            async def chunks(self):
                yield stored[-1]

        return Reader()

    def url(self, name: str) -> None:
        return None


class FakeProducer:
    def __init__(self) -> None:
        self.published: list[tuple[object, RequestCompleted]] = []

    async def publish(self, topic, event) -> None:
        self.published.append((topic, event))


class Assembler:
    """The adapters of one test, and the handlers called with them."""

    def __init__(self, rows: int, *, stored_rows: int | None = None, origin: Origin = Origin.UPLOAD) -> None:
        self.request_id = str(uuid.uuid4())
        self.store, self.blobs, self.producer = FakeProgressStore(), FakeBlobs(), FakeProducer()
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
        return [event for _, event in self.producer.published]

    def output_table(self) -> list[list[str]]:
        name, data, content_type = self.blobs.puts[-1]
        assert (name, content_type) == (output_csv_name(self.request_id, self.request["output_token"]), "text/csv")
        return list(csv.reader(io.StringIO(data.decode())))


async def test_nothing_is_built_or_published_while_rows_are_missing():
    assembler = Assembler(rows=3)
    await assembler.deliver(assembler.result(0), assembler.result(2))
    assert assembler.request["status"] == RequestStatus.PROCESSING
    assert (assembler.blobs.puts, assembler.events) == ([], [])


async def test_the_last_row_completes_the_request_once():
    assembler = Assembler(rows=3)
    await assembler.deliver(assembler.result(0), assembler.result(2, ok=False))
    await assembler.deliver(assembler.result(1))

    request = assembler.request
    assert request["status"] == RequestStatus.SUCCESS
    assert request["progress"] == {
        "rows_total": 3,
        "rows_done": 3,
        "images_total": 3,
        "images_ok": 2,
        "images_failed": 1,
    }
    assert [row[3] for row in assembler.output_table()[1:]] == ["http://out/0", "http://out/1", ""]
    [event] = assembler.events
    assert (event.event_type, event.status, str(event.event_id)) == (
        "request.completed",
        "SUCCESS",
        request["completion_event_id"],
    )
    assert (
        event.output_file_url
        == f"http://api/api/files/{assembler.request_id}/output-{assembler.request['output_token']}.csv"
    )
    assert (event.webhook_url, event.progress.model_dump()) == ("http://hooks.test/h", request["progress"])
    assert request["completion_published"] is True
    assert assembler.store.forgotten == [assembler.request_id]  # where its rows went is of no more use


async def test_a_redelivery_after_completion_publishes_nothing_new():
    assembler = Assembler(rows=1)
    await assembler.deliver(assembler.result(0))
    await assembler.deliver(assembler.result(0))
    await assembler.complete()
    assert len(assembler.events) == 1 and len(assembler.blobs.puts) == 1


async def test_a_completion_not_marked_published_is_published_again_with_its_event_id():
    assembler = Assembler(rows=1)
    await assembler.deliver(assembler.result(0))
    assembler.request["completion_published"] = False  # the process stopped between publishing and marking
    await assembler.deliver(assembler.result(0))
    first, again = assembler.events
    assert again.model_dump(exclude={"occurred_at"}) == first.model_dump(exclude={"occurred_at"})
    assert len(assembler.blobs.puts) == 1 and assembler.request["completion_published"] is True


async def test_a_replay_that_changes_a_finished_output_is_announced_as_an_update_with_a_new_event_id():
    assembler = Assembler(rows=2)
    await assembler.deliver(assembler.result(0), assembler.result(1, ok=False))
    await assembler.deliver(assembler.result(1, ok=False))  # no better: changes nothing
    assert len(assembler.events) == 1
    await assembler.deliver(assembler.result(1))

    completed, updated = assembler.events
    assert (completed.event_type, updated.event_type) == ("request.completed", "request.updated")
    assert updated.event_id != completed.event_id
    assert str(updated.event_id) == assembler.request["completion_event_id"]
    assert (updated.status, updated.progress.images_ok, updated.progress.images_failed) == ("SUCCESS", 2, 0)
    assert [row[3] for row in assembler.output_table()[1:]] == ["http://out/0", "http://out/1"]


async def test_a_completion_never_published_goes_out_before_the_update_that_follows_it():
    """The broker refused the completion; a replayed row then changes the output: the subscriber gets the
    completion, then the update, each with its own event id."""
    assembler = Assembler(rows=2)
    await assembler.deliver(assembler.result(0), assembler.result(1, ok=False))
    [completed] = assembler.events
    assembler.request["completion_published"] = False  # its publish failed
    assembler.producer.published.clear()
    await assembler.deliver(assembler.result(1))
    again, updated = assembler.events
    assert (again.event_type, str(again.event_id), again.progress.images_ok) == (
        "request.completed",
        str(completed.event_id),
        1,
    )
    assert (updated.event_type, updated.progress.images_ok) == ("request.updated", 2)
    assert updated.event_id != completed.event_id and assembler.request["completion_published"] is True


async def test_output_changed_on_a_finished_request_announces_only_an_output_that_differs():
    assembler = Assembler(rows=1)
    await assembler.deliver(assembler.result(0))
    await assembler.complete(output_changed=True)
    assert [event.event_type for event in assembler.events] == ["request.completed"]
    assert len(assembler.blobs.puts) == 1


async def test_a_row_improved_just_before_a_crash_rebuilds_the_output_on_its_redelivery():
    assembler = Assembler(rows=2)
    await assembler.deliver(assembler.result(0), assembler.result(1, ok=False))
    better = assembler.result(1)
    await assembler.store.record_rows([better])  # stored, then the process stopped before rebuilding
    await assembler.deliver(better)  # the redelivery finds nothing new to store
    completed, updated = assembler.events
    assert updated.event_type == "request.updated"
    assert [row[3] for row in assembler.output_table()[1:]] == ["http://out/0", "http://out/1"]
    await assembler.deliver(better)
    assert len(assembler.events) == 2  # built from the rows as they are: nothing left stale


async def test_an_applied_result_redelivered_beside_results_that_change_no_output_announces_nothing():
    assembler = Assembler(rows=2)
    await assembler.deliver(assembler.result(0), assembler.result(1))
    outside = RowProcessed(
        request_id=uuid.UUID(assembler.request_id), row_index=7, images=[assembler.result(0).images[0]]
    )
    await assembler.deliver(assembler.result(0), outside)  # a row the request does not have
    assert [event.event_type for event in assembler.events] == ["request.completed"]


async def test_giving_up_on_a_request_with_rows_missing_fails_it_with_the_rows_there_are():
    assembler = Assembler(rows=3, stored_rows=1, origin=Origin.KAFKA)
    await assembler.deliver(assembler.result(0))
    assert assembler.events == []
    await assembler.complete(give_up=True)

    assert assembler.request["status"] == RequestStatus.FAILED
    assert assembler.request["progress"] == {
        "rows_total": 3,
        "rows_done": 1,
        "images_total": 3,
        "images_ok": 1,
        "images_failed": 0,
    }
    assert [row[0] for row in assembler.output_table()[1:]] == ["1"]
    [event] = assembler.events
    assert (event.event_type, event.status) == ("request.completed", "FAILED")


async def test_a_request_none_of_whose_rows_was_ever_processed_fails():
    assembler = Assembler(rows=2)
    rows = [assembler.store.row_documents[row_id(assembler.request_id, index)] for index in range(2)]
    reason = "not processed after 2 re-drives"
    await assembler.deliver(*(unprocessed_results(assembler.request_id, row, reason) for row in rows))

    assert assembler.request["status"] == RequestStatus.FAILED
    assert assembler.request["progress"] == {
        "rows_total": 2,
        "rows_done": 2,
        "images_total": 2,
        "images_ok": 0,
        "images_failed": 2,
    }
    [event] = assembler.events
    assert event.status == "FAILED"
    assert all(f"not_processed: {reason}" in row[4] for row in assembler.output_table()[1:])


async def test_results_of_a_request_not_yet_known_wait_for_it():
    assembler = Assembler(rows=1)
    stranger = RowProcessed(
        request_id=uuid.uuid4(), row_index=0, images=[ImageResult(source_url="http://in/0", output_url="http://out/0")]
    )
    await assembler.deliver(stranger)
    assert (assembler.blobs.puts, assembler.events) == ([], [])


async def test_two_deliveries_racing_to_complete_a_request_announce_it_once():
    assembler = Assembler(rows=1)
    await assembler.store.record_rows([assembler.result(0)])
    await asyncio.gather(assembler.complete(), assembler.complete())
    assert len(assembler.events) == 1
    assert assembler.request["completion_published"] is True


def stored_row(index: int, *images: ImageResult) -> dict:
    row = new_row("r", index, serial=index, product_name="P", image_urls=[i.source_url for i in images], cells=["c"])
    if images:
        row.update(row_results(RowProcessed(request_id=uuid.uuid4(), row_index=index, images=list(images)), NOW))
    return row


OK = ImageResult(source_url="http://in/a", output_url="http://out/a")
GONE = ImageResult(source_url="http://in/b", error_code="http_404", error_message="gone")
UNPROCESSED = ImageResult(source_url="http://in/c", error_code="not_processed", error_message="gave up")


@pytest.mark.parametrize(
    ("rows", "status"),
    [
        ([stored_row(0, OK), stored_row(1, GONE)], RequestStatus.SUCCESS),
        ([stored_row(0, GONE), stored_row(1, GONE)], RequestStatus.SUCCESS),
        ([stored_row(0, UNPROCESSED), stored_row(1, OK)], RequestStatus.SUCCESS),
        ([stored_row(0, UNPROCESSED), stored_row(1, UNPROCESSED, UNPROCESSED)], RequestStatus.FAILED),
        ([stored_row(0, OK)], RequestStatus.FAILED),
        ([], RequestStatus.FAILED),
    ],
)
def test_the_status_a_request_finishes_with(rows, status):
    request = {
        "_id": "r",
        **new_request(
            status=RequestStatus.PROCESSING,
            origin=Origin.KAFKA,
            columns=COLUMNS,
            rows_total=2,
            images_total=3,
            webhook_url=None,
            now=NOW,
        ),
    }
    finished_with, progress = outcome(request, rows)
    assert finished_with == status
    images = [image for row in rows for image in row["images"]]
    assert (progress.rows_total, progress.images_total, progress.rows_done) == (2, 3, len(rows))
    assert (progress.images_ok, progress.images_failed) == (
        sum(image["output_url"] is not None for image in images),
        sum(image["output_url"] is None for image in images),
    )


def test_a_completion_event_carries_exactly_the_finished_statuses():
    assert typing.get_args(RequestCompleted.model_fields["status"].annotation) == FINISHED


async def test_a_crash_after_storing_the_new_output_still_records_and_announces_its_progress():
    assembler = Assembler(rows=2)
    await assembler.deliver(assembler.result(0), assembler.result(1, ok=False))
    better = assembler.result(1)
    await assembler.store.record_rows([better])
    rows = await assembler.store.rows(assembler.request)
    from imgpipe_assembler.output_csv import build_output_csv
    from imgpipe_schemas import ImageResult

    def _output_rows(rows):
        return [(row["cells"], [ImageResult.model_validate(image) for image in row.get("images", [])]) for row in rows]

    name = output_csv_name(assembler.request_id, assembler.request["output_token"])
    await assembler.blobs.put(name, build_output_csv(COLUMNS, _output_rows(rows)), "text/csv")  # then it stopped
    await assembler.deliver(better)
    assert [event.event_type for event in assembler.events] == ["request.completed", "request.updated"]
    assert assembler.request["progress"]["images_ok"] == 2
