"""The reconciler against the real broker and database: it re-drives the rows that are lost, never the
rows that wait in the topic, and gives up only on rows lost again and again."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.adapters.rows_topic import RowsTopic
from imgpipe_assembler.handlers import Adapters
from imgpipe_assembler.reconciler import ReconcilePolicy, reconcile
from imgpipe_bus import EventProducer, ensure_topics
from imgpipe_bus.positions import Position, State, states
from imgpipe_runtime.blobs import GridFsBlobStore
from imgpipe_runtime.documents import published_positions
from imgpipe_schemas import RequestAccepted, RowSubmitted
from imgpipe_schemas.topics import REQUESTS_ACCEPTED, REQUESTS_COMPLETED, ROWS_SUBMITTED
from tests.integration.kafka_helpers import consume
from tests.integration.uploads import store_upload

CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://in/0\n2,B,\"http://in/1,http://in/2\"\n"
STALL = 60


@pytest.fixture
async def reconciler(db, bus_settings):
    """Runs passes at chosen times; ``group`` stands for the image workers' consumer group."""
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    group = f"workers-{uuid.uuid4().hex[:8]}"
    store = ProgressStore(db)
    adapters = Adapters(store=store, blobs=GridFsBlobStore(db), producer=producer, public_base_url="http://api")
    rows_topic = RowsTopic(bus_settings, group=group)

    class Passes:
        start = datetime.now(UTC)

        async def at(self, seconds: float, max_rounds: int = 2) -> dict:
            policy = ReconcilePolicy(stall_s=STALL, max_rounds=max_rounds)
            return await reconcile(adapters, rows_topic, policy=policy, now=self.start + timedelta(seconds=seconds))

        async def request(self, request_id: str) -> dict:
            return await store.get(request_id)

        def read_by_workers(self, positions) -> None:
            """Commits the workers' group past ``positions``, as if a worker had handled those rows."""
            commit_past(bus_settings.bootstrap_servers, group, positions)

    yield Passes()
    await producer.close()


def commit_past(bootstrap: str, group: str, positions) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    consumer.commit(
        offsets=[TopicPartition(ROWS_SUBMITTED.name, p, o) for p, o in ends.items()], asynchronous=False
    )
    consumer.close()


def events_of(bootstrap: str, request_id: str, count: int, timeout: float = 30.0) -> list:
    return consume(bootstrap, ROWS_SUBMITTED, count, timeout, match=lambda event: str(event.request_id) == request_id)


async def test_a_request_never_published_is_published_once_and_then_waits(db, bus_settings, reconciler):
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV, quality=40)  # stored, but ingest stopped before publishing
    assert (await reconciler.at(0))["redriven"] == 0  # not stalled yet
    assert (await reconciler.at(STALL + 1))["redriven"] == 1
    request = await reconciler.request(request_id)
    assert (request["status"], request["reconcile_rounds"]) == ("PROCESSING", 1)
    rows = events_of(bus_settings.bootstrap_servers, request_id, 2)
    assert sorted((e.row_index, e.quality, tuple(e.image_urls)) for _, _, e in rows) == [
        (0, 40, ("http://in/0",)), (1, 40, ("http://in/1", "http://in/2")),
    ]
    assert sorted(await published_positions(db, request_id)) == [0, 1]
    # No worker reads them: they wait, however long, and are never published again nor given up.
    for later in (2 * STALL + 2, 5 * STALL, 20 * STALL):
        counts = await reconciler.at(later)
        assert (counts["redriven"], counts["gave_up"], counts["waiting"]) == (0, 0, 1)
    request = await reconciler.request(request_id)
    assert (request["status"], request["reconcile_rounds"]) == ("PROCESSING", 1)
    with pytest.raises(AssertionError):
        events_of(bus_settings.bootstrap_servers, request_id, 3, timeout=3)


async def test_rows_gone_from_the_topic_are_published_again_at_once(db, bus_settings, reconciler):
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    # Recorded where the broker now holds other messages (as after a restart with an empty log).
    producer = EventProducer(bus_settings)
    try:
        other = await producer.publish_many(
            ROWS_SUBMITTED, [RowSubmitted(request_id=uuid.uuid4(), row_index=0, serial=1, product_name="X", image_urls=["http://in/9"])]
        )
    finally:
        await producer.close()
    store = ProgressStore(db)
    await store.record_publication(request_id, [0, 1], [other[0], (0, 10**9)])
    assert (await reconciler.at(STALL + 1))["redriven"] == 1
    assert len(events_of(bus_settings.bootstrap_servers, request_id, 2)) == 2


async def test_rows_read_without_results_are_published_again_a_stall_later_then_given_up(db, bus_settings, reconciler):
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    assert (await reconciler.at(STALL + 1))["redriven"] == 1  # never published
    reconciler.read_by_workers((await published_positions(db, request_id)).values())
    # Read, but no result yet: it may be on its way to the assembler, so the first look only notes it.
    assert (await reconciler.at(2 * STALL + 2))["waiting"] == 1
    assert (await reconciler.at(2 * STALL + 30))["waiting"] == 1
    assert (await reconciler.at(3 * STALL + 3))["redriven"] == 1  # still unanswered a stall later
    assert (await reconciler.request(request_id))["reconcile_rounds"] == 2
    assert len(events_of(bus_settings.bootstrap_servers, request_id, 4)) == 4
    reconciler.read_by_workers((await published_positions(db, request_id)).values())
    assert (await reconciler.at(4 * STALL + 4))["waiting"] == 1
    assert (await reconciler.at(5 * STALL + 5))["gave_up"] == 1
    request = await reconciler.request(request_id)
    assert request["status"] == "FAILED"
    assert request["progress"] == {"rows_total": 2, "rows_done": 2, "images_total": 3, "images_ok": 0, "images_failed": 3}
    assert await published_positions(db, request_id) == {}  # finished: never re-driven again
    completed = consume(bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 1, match=lambda e: str(e.request_id) == request_id)
    assert completed[0][2].status == "FAILED"


async def test_a_row_first_seen_unanswered_waits_a_stall_of_its_own(db, bus_settings, reconciler):
    """Another row of the request unanswered for a stall already does not hurry it."""
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    assert (await reconciler.at(STALL + 1, max_rounds=5))["redriven"] == 1  # never published
    first = await published_positions(db, request_id)
    reconciler.read_by_workers([first[0]])
    assert (await reconciler.at(2 * STALL + 2, max_rounds=5))["waiting"] == 1  # row 0 noted
    reconciler.read_by_workers([first[1]])
    assert (await reconciler.at(3 * STALL + 3, max_rounds=5))["redriven"] == 1  # row 0 only; row 1 is noted from now
    assert len(events_of(bus_settings.bootstrap_servers, request_id, 3)) == 3
    request = await reconciler.request(request_id)
    assert (request["reconcile_rounds"], request["unanswered_rows"]) == (2, [1])
    assert (await published_positions(db, request_id))[1] == first[1]
    assert (await reconciler.at(4 * STALL + 4, max_rounds=5))["redriven"] == 1  # row 1, a stall after it was first seen
    assert (await published_positions(db, request_id))[1] != first[1]


async def test_a_publish_that_fails_counts_no_round_and_leaves_an_upload_pending(db, bus_settings):
    class BrokerGone:
        async def publish_many(self, topic, events):
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    store = ProgressStore(db)
    adapters = Adapters(store=store, blobs=GridFsBlobStore(db), producer=BrokerGone(), public_base_url="http://api")
    policy = ReconcilePolicy(stall_s=STALL, max_rounds=2)
    later = datetime.now(UTC) + timedelta(seconds=STALL + 1)
    assert (await reconcile(adapters, RowsTopic(bus_settings), policy=policy, now=later))["failed"] == 1
    request = await store.get(request_id)
    assert (request["status"], request.get("reconcile_rounds", 0)) == ("PENDING", 0)


async def test_positions_tell_waiting_read_and_gone_apart(bus_settings):
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    request_id = uuid.uuid4()
    events = [RequestAccepted(request_id=request_id, rows_total=1, images_total=1) for _ in range(3)]
    try:
        first, second, third = await producer.publish_many(REQUESTS_ACCEPTED, events)
    finally:
        await producer.close()
    group = f"readers-{uuid.uuid4().hex[:8]}"
    key = str(request_id).encode()
    commit = Consumer({"bootstrap.servers": bus_settings.bootstrap_servers, "group.id": group})
    commit.commit(offsets=[TopicPartition(REQUESTS_ACCEPTED.name, first.partition, first.offset + 1)], asynchronous=False)
    commit.close()
    found = states(
        bus_settings,
        group,
        REQUESTS_ACCEPTED.name,
        {
            first: key, second: key, third: b"someone else", Position(third.partition, 10**9): key,
            Position(third.partition, third.offset + 1): key,  # the log's end: nothing is there yet
        },
    )
    assert found == {
        first: State.READ,
        second: State.WAITING,
        third: State.GONE,
        Position(third.partition, 10**9): State.GONE,
        Position(third.partition, third.offset + 1): State.GONE,
    }


async def test_many_waiting_rows_on_one_partition_all_count_as_waiting(bus_settings):
    """Reads at several offsets of one partition, one after the other (the middles of a torn partition)."""
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    request_id = uuid.uuid4()
    try:
        where = await producer.publish_many(
            REQUESTS_ACCEPTED, [RequestAccepted(request_id=request_id, rows_total=1, images_total=1) for _ in range(6)]
        )
    finally:
        await producer.close()
    key = str(request_id).encode()
    expected = {position: key for position in where}
    expected[Position(where[-1].partition, where[-1].offset + 10**9)] = key  # the last one gone: every middle is read
    found = states(bus_settings, f"readers-{uuid.uuid4().hex[:8]}", REQUESTS_ACCEPTED.name, expected)
    assert [found[position] for position in where] == [State.WAITING] * 6


async def test_a_stored_row_beyond_the_events_bounds_is_failed_not_published_again(db, bus_settings, reconciler):
    """A row stored before the events were bounded (a direct producer's 40,000 URLs) can never be sent:
    it is recorded as failed with the reason, and its request finishes."""
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    urls = [f"ftp://in/{n}" for n in range(40_000)]
    await db.rows.update_one({"request_id": request_id, "row_index": 1}, {"$set": {"image_urls": urls}})
    assert (await reconciler.at(STALL + 1))["redriven"] == 1
    [(_, _, event)] = events_of(bus_settings.bootstrap_servers, request_id, 1)
    assert event.row_index == 0
    row = await db.rows.find_one({"request_id": request_id, "row_index": 1})
    assert row["done"] and len(row["images"]) == 20
    assert "not a valid row event" in row["images"][0]["error_message"]
