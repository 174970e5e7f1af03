"""When the assembler completes a request, and what it announces, against in-memory adapters."""

import asyncio
import typing
import uuid

import pytest

from imgpipe_assembler.handlers import outcome, unprocessed_results
from imgpipe_runtime.blobs import output_csv_name
from imgpipe_runtime.documents import Origin, new_request, new_row, row_id, row_results
from imgpipe_schemas import FINISHED, ImageResult, RequestCompleted, RequestStatus, RowProcessed
from tests.support.assembler_fakes import COLUMNS, NOW, Assembler


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
