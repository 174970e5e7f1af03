"""The reconciler against the real broker and database: it re-drives the rows that are lost, never the
rows that wait in the topic, and gives up only on rows lost again and again."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.adapters.rows_topic import RowsTopic
from imgpipe_assembler.handlers import Adapters, record_results
from imgpipe_assembler.reconciler import ReconcilePolicy, reconcile
from imgpipe_bus import EventProducer, ensure_topics
from imgpipe_bus.positions import Position, State, states
from imgpipe_runtime.blobs import GridFsBlobStore
from imgpipe_runtime.documents import published_positions
from imgpipe_schemas import ImageOptions, ImageResult, RequestAccepted, RowProcessed, RowSubmitted
from imgpipe_schemas.topics import REQUESTS_ACCEPTED, REQUESTS_COMPLETED, ROWS_PROCESSED, ROWS_SUBMITTED
from tests.support.infra import BACKEND
from tests.support.kafka_helpers import consume
from tests.support.uploads import store_upload

CSV = b'S. No.,Product Name,Input Image Urls\n1,A,http://in/0\n2,B,"http://in/1,http://in/2"\n'
STALL = 60
# Stands for the assembler's consumer group, the same in every test: a result published by one test and read
# past (results_read) is behind it for the next.
RESULTS_GROUP = f"assembler-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def reconciler(db, bus_settings):
    """Runs passes at chosen times; ``group`` stands for the image workers' consumer group."""
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    group = f"workers-{uuid.uuid4().hex[:8]}"
    store = ProgressStore(db)
    adapters = Adapters(store=store, blobs=GridFsBlobStore(db), producer=producer, public_base_url="http://api")
    rows_topic = RowsTopic(bus_settings, group=group, results_group=RESULTS_GROUP)
    if BACKEND == "docker":  # a broker shared by every test module: results of earlier ones are read past
        results_read_to_the_end(bus_settings.bootstrap_servers)

    class Passes:
        start = datetime.now(UTC)
        adapters = Adapters(store=store, blobs=GridFsBlobStore(db), producer=producer, public_base_url="http://api")

        async def at(self, seconds: float, max_rounds: int = 2) -> dict:
            policy = ReconcilePolicy(stall_s=STALL, max_rounds=max_rounds)
            return await reconcile(adapters, rows_topic, policy=policy, now=self.start + timedelta(seconds=seconds))

        async def request(self, request_id: str) -> dict:
            return await store.get(request_id)

        def read_by_workers(self, positions) -> None:
            """Commits the workers' group past ``positions``, as if a worker had handled those rows."""
            commit_past(bus_settings.bootstrap_servers, group, positions)

        async def results_queued(self) -> list:
            """Publishes a result of another request that the assembler has not read yet."""
            result = RowProcessed(
                request_id=uuid.uuid4(),
                row_index=0,
                images=[ImageResult(source_url="http://in/0", error_code="timeout")],
            )
            return await producer.publish_many(ROWS_PROCESSED, [result])

        def results_read(self, positions) -> None:
            """Commits the assembler's group past ``positions``, as if it had recorded those results."""
            commit_past(bus_settings.bootstrap_servers, RESULTS_GROUP, positions, ROWS_PROCESSED.name)

    yield Passes()
    await producer.close()


def commit_past(bootstrap: str, group: str, positions, topic: str = ROWS_SUBMITTED.name) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False)
    consumer.close()


def results_read_to_the_end(bootstrap: str) -> None:
    """Commits RESULTS_GROUP at the end of every partition of the results topic (Kafka's end offsets are
    right; the embedded broker's are not, but each module has a broker of its own there)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": RESULTS_GROUP, "enable.auto.commit": False})
    partitions = consumer.list_topics(ROWS_PROCESSED.name, timeout=10).topics[ROWS_PROCESSED.name].partitions
    ends = [
        TopicPartition(
            ROWS_PROCESSED.name,
            p,
            consumer.get_watermark_offsets(TopicPartition(ROWS_PROCESSED.name, p), timeout=10)[1],
        )
        for p in partitions
    ]
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


async def every_image_done(request_id: str, adapters: Adapters) -> None:
    """Records a result for every image of CSV's two rows: the request completes."""
    rows = [
        RowProcessed(
            request_id=uuid.UUID(request_id),
            row_index=index,
            images=[ImageResult(source_url=f"http://in/{n}", output_url=f"http://out/{n}") for n in urls],
        )
        for index, urls in ((0, [0]), (1, [1, 2]))
    ]
    await record_results(rows, adapters)


def events_of(bootstrap: str, request_id: str, count: int, timeout: float = 30.0) -> list:
    return consume(bootstrap, ROWS_SUBMITTED, count, timeout, match=lambda event: str(event.request_id) == request_id)


async def test_a_request_never_published_is_published_once_and_then_waits(db, bus_settings, reconciler):
    request_id = str(uuid.uuid4())
    shaping = ImageOptions(max_width=64, fit="contain", preset="google-shopping")
    apparel = CSV.replace(b"Urls\n", b"Urls,Apparel\n").replace(b"http://in/0\n", b"http://in/0,yes\n")
    await store_upload(db, request_id, apparel, quality=40, image_options=shaping)  # ingest stopped before publishing
    assert (await reconciler.at(0))["redriven"] == 0  # not stalled yet
    assert (await reconciler.at(STALL + 1))["redriven"] == 1
    request = await reconciler.request(request_id)
    assert (request["status"], request["reconcile_rounds"]) == ("PROCESSING", 1)
    rows = events_of(bus_settings.bootstrap_servers, request_id, 2)
    assert sorted((e.row_index, e.quality, tuple(e.image_urls), e.apparel) for _, _, e in rows) == [
        (0, 40, ("http://in/0",), True),
        (1, 40, ("http://in/1", "http://in/2"), False),
    ]
    assert {e.image_options for _, _, e in rows} == {shaping}
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
            ROWS_SUBMITTED,
            [
                RowSubmitted(
                    request_id=uuid.uuid4(), row_index=n, serial=1, product_name="X", image_urls=["http://in/9"]
                )
                for n in range(2)
            ],
        )
    finally:
        await producer.close()
    store = ProgressStore(db)
    await store.record_publication(request_id, [0, 1], other)
    assert (await reconciler.at(STALL + 1))["redriven"] == 1
    assert len(events_of(bus_settings.bootstrap_servers, request_id, 2)) == 2


async def test_rows_read_without_results_are_published_again_a_stall_later_then_given_up(db, bus_settings, reconciler):
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    assert (await reconciler.at(STALL + 1, max_rounds=1))["redriven"] == 1  # never published: no round
    reconciler.read_by_workers((await published_positions(db, request_id)).values())
    # Read, but no result yet: it may be on its way to the assembler, so the first look only notes it.
    assert (await reconciler.at(2 * STALL + 2, max_rounds=1))["waiting"] == 1
    assert (await reconciler.at(2 * STALL + 30, max_rounds=1))["waiting"] == 1
    assert (await reconciler.at(3 * STALL + 3, max_rounds=1))["redriven"] == 1  # still unanswered a stall later
    assert sorted([row["redrives"] async for row in db.rows.find({"request_id": request_id})]) == [1, 1]
    assert len(events_of(bus_settings.bootstrap_servers, request_id, 4)) == 4
    reconciler.read_by_workers((await published_positions(db, request_id)).values())
    assert (await reconciler.at(4 * STALL + 4, max_rounds=1))["waiting"] == 1
    assert (await reconciler.at(5 * STALL + 5, max_rounds=1))["gave_up"] == 1
    request = await reconciler.request(request_id)
    assert request["status"] == "FAILED"
    assert request["progress"] == {
        "rows_total": 2,
        "rows_done": 2,
        "images_total": 3,
        "images_ok": 0,
        "images_failed": 3,
    }
    assert await published_positions(db, request_id) == {}  # finished: never re-driven again
    completed = consume(
        bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 1, match=lambda e: str(e.request_id) == request_id
    )
    assert completed[0][2].status == "FAILED"


async def test_read_rows_wait_while_the_assembler_has_results_to_read(db, bus_settings, reconciler):
    """A result queued behind a slow assembler is not lost: the row is never published again, nor given up,
    until the assembler has read every result."""
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    assert (await reconciler.at(STALL + 1, max_rounds=1))["redriven"] == 1  # never published
    reconciler.read_by_workers((await published_positions(db, request_id)).values())
    queued = await reconciler.results_queued()
    try:
        assert (await reconciler.at(2 * STALL + 2, max_rounds=1))["waiting"] == 1  # noted
        for later in (3 * STALL + 3, 10 * STALL, 30 * STALL):
            counts = await reconciler.at(later, max_rounds=1)
            assert (counts["waiting"], counts["redriven"], counts["gave_up"]) == (1, 0, 0)
    finally:
        reconciler.results_read(queued)
    assert (await reconciler.at(30 * STALL + 1, max_rounds=1))["redriven"] == 1
    assert sorted([row["redrives"] async for row in db.rows.find({"request_id": request_id})]) == [1, 1]
    assert (await reconciler.request(request_id))["status"] == "PROCESSING"


async def test_rounds_count_per_row(db, bus_settings, reconciler):
    """A row re-driven for the first time is published again, however often another row of its request was."""
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    assert (await reconciler.at(STALL + 1, max_rounds=1))["redriven"] == 1  # never published
    first = await published_positions(db, request_id)
    reconciler.read_by_workers([first[0]])
    assert (await reconciler.at(2 * STALL + 2, max_rounds=1))["waiting"] == 1  # row 0 noted
    assert (await reconciler.at(3 * STALL + 3, max_rounds=1))["redriven"] == 1  # row 0: its one round
    reconciler.read_by_workers((await published_positions(db, request_id)).values())
    assert (await reconciler.at(4 * STALL + 4, max_rounds=1))["waiting"] == 1  # both noted
    assert (await reconciler.at(5 * STALL + 5, max_rounds=1))["redriven"] == 1
    row_0, row_1 = [row async for row in db.rows.find({"request_id": request_id}, sort=[("row_index", 1)])]
    assert row_0["done"] and "lost again after 1 re-drives" in row_0["images"][0]["error_message"]
    assert (row_1["done"], row_1["redrives"]) == (False, 1)
    assert (await published_positions(db, request_id))[1] != first[1]


async def test_rows_the_broker_does_not_answer_for_are_published_again_without_a_round(db, bus_settings, reconciler):
    """A broker that does not say where a row's event is (slow, or restarted empty without refusing the
    offset): the row is published again a stall after it was first seen so, and never given up for it."""

    class Unanswering(RowsTopic):
        async def states(self, request_id, published):
            return {index: State.UNKNOWN for index in published}

    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    store = ProgressStore(db)
    producer = EventProducer(bus_settings)
    adapters = Adapters(store=store, blobs=GridFsBlobStore(db), producer=producer, public_base_url="http://api")
    policy = ReconcilePolicy(stall_s=STALL, max_rounds=1)
    start = datetime.now(UTC)

    async def at(seconds: float) -> dict:
        return await reconcile(
            adapters, Unanswering(bus_settings), policy=policy, now=start + timedelta(seconds=seconds)
        )

    try:
        assert (await at(STALL + 1))["redriven"] == 1  # never published
        for n in range(2, 8, 2):
            assert (await at(n * STALL + n))["waiting"] == 1  # noted
            assert (await at((n + 1) * STALL + n + 1))["redriven"] == 1
    finally:
        await producer.close()
    assert sorted([row.get("redrives", 0) async for row in db.rows.find({"request_id": request_id})]) == [0, 0]
    assert (await store.get(request_id))["status"] == "PROCESSING"


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
    commit.commit(
        offsets=[TopicPartition(REQUESTS_ACCEPTED.name, first.partition, first.offset + 1)], asynchronous=False
    )
    commit.close()
    found = states(bus_settings, group, REQUESTS_ACCEPTED.name, {first: key, second: key, third: b"someone else"})
    assert found == {first: State.READ, second: State.WAITING, third: State.GONE}
    # Past the log's end, the embedded broker answers nothing, where Kafka says out of range; its
    # watermarks are wrong, so nothing is taken for gone on their strength. At the log's end, neither says.
    past, end = Position(third.partition, 10**9), Position(third.partition, third.offset + 1)
    found = states(bus_settings, group, REQUESTS_ACCEPTED.name, {past: key, end: key})
    assert found == {past: State.UNKNOWN if BACKEND == "embedded" else State.GONE, end: State.UNKNOWN}


async def test_many_waiting_rows_on_one_partition_all_count_as_waiting(bus_settings):
    """Reads at several offsets of one partition, one after the other (the middles of a torn partition)."""
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    request_id = uuid.uuid4()
    try:
        where = await producer.publish_many(
            REQUESTS_ACCEPTED, [RequestAccepted(request_id=request_id, rows_total=1, images_total=1) for _ in range(7)]
        )
    finally:
        await producer.close()
    key = str(request_id).encode()
    expected = {position: key for position in where[:6]}
    expected[where[6]] = b"someone else"  # the last one gone (another message is there): every middle is read
    found = states(bus_settings, f"readers-{uuid.uuid4().hex[:8]}", REQUESTS_ACCEPTED.name, expected)
    assert [found[position] for position in where] == [State.WAITING] * 6 + [State.GONE]


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


async def test_a_completion_with_no_delivery_a_stall_later_is_announced_again_until_the_notifier_records_it(
    db, bus_settings, reconciler
):
    """The broker acknowledged the completion and lost it before the notifier read it: it is published
    again, with its event id, a stall after each try, until a delivery of it is recorded."""
    hooked, silent = str(uuid.uuid4()), str(uuid.uuid4())
    await store_upload(db, hooked, CSV, webhook_url="http://hooks.test/h")
    await store_upload(db, silent, CSV)
    store = ProgressStore(db)
    for request_id in (hooked, silent):
        await every_image_done(request_id, reconciler.adapters)
    request = await store.get(hooked)
    assert (request["status"], request["completion_published"]) == ("SUCCESS", True)

    def announced(count: int) -> list:
        return consume(
            bus_settings.bootstrap_servers, REQUESTS_COMPLETED, count, match=lambda e: str(e.request_id) == hooked
        )

    assert (await reconciler.at(STALL + 1))["reannounced"] == 1  # the request without a webhook is let be
    first, again = (event for _, _, event in announced(2))
    assert (again.event_id, again.event_type, again.webhook_url) == (
        first.event_id,
        "request.completed",
        "http://hooks.test/h",
    )
    assert (await reconciler.at(STALL + 2))["reannounced"] == 0  # a stall after each try
    assert (await reconciler.at(2 * STALL + 2))["reannounced"] == 1
    await db.deliveries.insert_one({"_id": str(first.event_id), "request_id": hooked, "state": "delivered"})
    assert (await reconciler.at(3 * STALL + 3))["reannounced"] == 0
    assert "delivery_pending" not in await store.get(hooked)
    assert (await reconciler.at(10 * STALL))["reannounced"] == 0
    with pytest.raises(AssertionError):
        announced(4)


async def test_a_completion_whose_delivery_never_comes_is_announced_again_only_max_rounds_times(
    db, bus_settings, reconciler
):
    """No notifier reads the completions (not deployed, or not given the URL): the reconciler stops, loudly."""
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV, webhook_url="http://hooks.test/h")
    await every_image_done(request_id, reconciler.adapters)
    counts = [(await reconciler.at(n * (STALL + 1)))["reannounced"] for n in range(1, 6)]
    assert counts == [1, 1, 0, 0, 0]  # max_rounds = 2
    assert "delivery_pending" not in await ProgressStore(db).get(request_id)
