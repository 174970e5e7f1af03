"""Requests produced straight to Kafka: their events may reach the assembler in any order."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.adapters.rows_topic import RowsTopic
from imgpipe_assembler.handlers import Adapters, record_results, register_requests, register_rows
from imgpipe_assembler.reconciler import ReconcilePolicy, reconcile
from imgpipe_bus import EventProducer, Unprocessable, ensure_topics
from imgpipe_runtime.blobs import GridFsBlobStore
from imgpipe_runtime.mongo import connect
from imgpipe_schemas import ImageOptions, ImageResult, RequestAccepted, RowProcessed, RowSubmitted
from imgpipe_schemas.topics import REQUESTS_COMPLETED, ROWS_SUBMITTED
from tests.support.kafka_helpers import consume
from tests.support.uploads import store_upload


@pytest.fixture
async def adapters(mongo_settings, bus_settings):
    ensure_topics(bus_settings)
    db = connect(mongo_settings)
    producer = EventProducer(bus_settings)
    yield Adapters(store=ProgressStore(db), blobs=GridFsBlobStore(db), producer=producer, public_base_url="http://api")
    await producer.close()
    await db.client.drop_database(mongo_settings.database)
    await db.client.close()


def accepted(request_id: uuid.UUID, rows: int) -> RequestAccepted:
    return RequestAccepted(
        request_id=request_id, rows_total=rows, images_total=rows, webhook_url="https://hooks.example/x"
    )


def submitted(
    request_id: uuid.UUID, row: int, quality: int = 50, image_options: ImageOptions | None = None, apparel: bool = False
) -> RowSubmitted:
    return RowSubmitted(
        request_id=request_id,
        row_index=row,
        serial=row + 10,
        product_name=f"P{row}",
        image_urls=[f"http://in/{row}"],
        quality=quality,
        image_options=image_options or ImageOptions(),
        apparel=apparel,
    )


def processed(request_id: uuid.UUID, row: int) -> RowProcessed:
    image = ImageResult(source_url=f"http://in/{row}", output_url=f"http://out/{row}")
    return RowProcessed(request_id=request_id, row_index=row, images=[image])


async def output_table(adapters, request: dict) -> list[list[str]]:
    reader = await adapters.blobs.open(request["output_file"])
    data = b"".join([chunk async for chunk in reader.chunks()]).decode()
    return list(csv.reader(io.StringIO(data)))


async def test_results_before_rows_before_the_request_still_complete_it(adapters, bus_settings):
    store, request_id = adapters.store, uuid.uuid4()
    await record_results([processed(request_id, 1), processed(request_id, 0)], adapters)
    assert await store.get(str(request_id)) is None
    await register_rows([submitted(request_id, 0)], adapters)
    await register_requests([accepted(request_id, 2)], adapters)
    request = await store.get(str(request_id))
    assert request["status"] == "PROCESSING"  # row 1's result is in, its input is not
    await register_rows([submitted(request_id, 1), submitted(request_id, 0)], adapters)

    request = await store.get(str(request_id))
    assert request["status"] == "SUCCESS"
    assert request["progress"] == {
        "rows_total": 2,
        "rows_done": 2,
        "images_total": 2,
        "images_ok": 2,
        "images_failed": 0,
    }
    assert await output_table(adapters, request) == [
        [
            "S. No.",
            "Product Name",
            "Input Image Urls",
            "Output Image Urls",
            "Image Errors",
            "Image Details",
            "Image Checks",
        ],
        ["10", "P0", "http://in/0", "http://out/0", "", "quality=;score=;;0", ""],
        ["11", "P1", "http://in/1", "http://out/1", "", "quality=;score=;;0", ""],
    ]
    completed = consume(
        bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 1, match=lambda e: e.request_id == request_id
    )[0][2]
    assert (completed.status, completed.webhook_url) == ("SUCCESS", "https://hooks.example/x")


async def test_a_duplicate_request_event_changes_nothing(adapters):
    store, request_id = adapters.store, uuid.uuid4()
    await register_requests([accepted(request_id, 2)], adapters)
    await register_requests([accepted(request_id, 5)], adapters)
    assert (await store.get(str(request_id)))["rows_total"] == 2


async def test_a_row_outside_its_request_is_unprocessable(adapters):
    request_id = uuid.uuid4()
    await register_requests([accepted(request_id, 2)], adapters)
    with pytest.raises(Unprocessable, match="row_index 2 is outside request .* which has 2 rows"):
        await register_rows([submitted(request_id, 2)], adapters)


async def test_an_uploads_events_leave_its_stored_rows_alone(adapters, mongo_settings):
    db = connect(mongo_settings)
    request_id = uuid.uuid4()
    await store_upload(db, str(request_id), b"S. No.,Product Name,Input Image Urls,Colour\n7,Hat,http://in/0,red\n")
    await register_requests([accepted(request_id, 1)], adapters)
    await register_rows([submitted(request_id, 0)], adapters)
    await record_results([processed(request_id, 0)], adapters)
    request = await adapters.store.get(str(request_id))
    assert request["status"] == "SUCCESS"
    assert (await output_table(adapters, request))[1] == [
        "7",
        "Hat",
        "http://in/0",
        "red",
        "http://out/0",
        "",
        "quality=;score=;;0",
        "",
    ]
    await db.client.close()


async def test_a_request_whose_rows_never_came_is_redriven_then_failed(adapters, bus_settings):
    store, request_id = adapters.store, uuid.uuid4()
    await register_requests([accepted(request_id, 3)], adapters)
    shaping = ImageOptions(max_width=50, max_height=50, fit="cover", preset="amazon")
    await register_rows([submitted(request_id, 0, quality=30, image_options=shaping, apparel=True)], adapters)
    policy = ReconcilePolicy(stall_s=60, max_rounds=1)
    rows_topic = RowsTopic(bus_settings, group=f"workers-{uuid.uuid4().hex[:8]}")
    run = lambda seconds: reconcile(adapters, rows_topic, policy=policy, now=start + timedelta(seconds=seconds))  # noqa: E731
    start = datetime.now(UTC)
    assert (await run(61))["redriven"] == 1  # row 0 was published where the reconciler cannot see it
    redriven = consume(bus_settings.bootstrap_servers, ROWS_SUBMITTED, 1, match=lambda e: e.request_id == request_id)
    assert [(e.row_index, e.quality, e.image_options, e.apparel) for _, _, e in redriven] == [(0, 30, shaping, True)]
    assert (await run(122))["waiting"] == 1  # row 0 waits for a worker: not given up while it waits
    await record_results([processed(request_id, 0)], adapters)
    assert (await store.get(str(request_id)))["status"] == "PROCESSING"
    # Rows 1 and 2 never came: each stall with rows missing counts, and no re-drive of row 0 did.
    assert (await run(300))["waiting"] == 1
    assert (await run(361))["gave_up"] == 1

    request = await store.get(str(request_id))
    assert request["status"] == "FAILED"
    assert request["progress"] == {
        "rows_total": 3,
        "rows_done": 1,
        "images_total": 3,
        "images_ok": 1,
        "images_failed": 0,
    }
    assert [row[0] for row in (await output_table(adapters, request))[1:]] == ["10"]


async def test_a_direct_requests_rows_waiting_in_the_topic_are_not_redriven(adapters, bus_settings):
    """The assembler records where it read a direct producer's rows, so the reconciler sees them wait."""
    from imgpipe_bus import Consumed, encode

    request_id = uuid.uuid4()
    rows = [submitted(request_id, 0), submitted(request_id, 1)]
    where = await adapters.producer.publish_many(ROWS_SUBMITTED, rows)
    letters = [
        Consumed(ROWS_SUBMITTED.name, at.partition, at.offset, None, row.partition_key().encode(), encode(row), [])
        for row, at in zip(rows, where, strict=True)
    ]
    await register_requests([accepted(request_id, 2)], adapters)
    await register_rows(rows, adapters, letters=letters)
    rows_topic = RowsTopic(bus_settings, group=f"workers-{uuid.uuid4().hex[:8]}")
    policy = ReconcilePolicy(stall_s=60, max_rounds=1)
    later = datetime.now(UTC) + timedelta(seconds=61)
    counts = await reconcile(adapters, rows_topic, policy=policy, now=later)
    assert (counts["waiting"], counts["redriven"]) == (1, 0)


async def test_the_output_is_read_a_chunk_at_a_time_in_input_order(adapters):
    """Rows past several chunks come out in input order; a row never sent and a result without its row's
    input are left out, and the request finishes FAILED for the missing row."""
    request_id, rows = uuid.uuid4(), 1203
    await register_requests([accepted(request_id, rows)], adapters)
    sent = [index for index in range(rows) if index != 700]
    for start in range(0, len(sent), 400):
        await register_rows([submitted(request_id, index) for index in sent[start : start + 400]], adapters)
    results = [processed(request_id, index) for index in range(rows)]
    for start in range(0, rows, 400):
        await record_results(results[start : start + 400], adapters)
    request = await adapters.store.get(str(request_id))
    seen = [row["row_index"] async for row in adapters.store.iter_rows(request, chunk=500)]
    assert seen == sent
    from imgpipe_assembler.handlers import complete_if_done

    await complete_if_done(str(request_id), adapters, give_up=True)
    request = await adapters.store.get(str(request_id))
    table = await output_table(adapters, request)
    assert [int(line[0]) - 10 for line in table[1:]] == sent
    assert request["status"] == "FAILED" and request["progress"]["rows_done"] == rows - 1
