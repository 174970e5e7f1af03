import asyncio
import logging
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from imgpipe_bus import (
    BusSettings,
    EventProducer,
    create_app,
    encode,
    ensure_topics,
    topic_names,
)
from imgpipe_bus.admin import ensure_partitions
from imgpipe_schemas import ImageResult, RequestAccepted, RowProcessed, RowSubmitted
from imgpipe_schemas.topics import REQUESTS_ACCEPTED, REQUESTS_COMPLETED, ROWS_PROCESSED, ROWS_SUBMITTED
from tests.support.agents import run_agent
from tests.support.infra import BACKEND
from tests.support.kafka_helpers import consume
from tests.waiting import eventually


def partition_counts(settings: BusSettings, names) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=10)
    return {name: len(metadata.topics[name].partitions) for name in names}


def test_topics_are_created_explicitly_with_the_partitions_of_their_role(bus_settings):
    ensure_topics(bus_settings)
    assert ensure_topics(bus_settings) == []
    counts = partition_counts(bus_settings, topic_names())
    assert counts[ROWS_SUBMITTED.name] == counts[ROWS_PROCESSED.name] == bus_settings.partitions
    assert counts[REQUESTS_ACCEPTED.name] == counts[REQUESTS_COMPLETED.name] == bus_settings.request_partitions
    for name in topic_names():
        if name.endswith(".dlq"):
            assert counts[name] == bus_settings.dead_letter_partitions, name
    assert bus_settings.partitions > bus_settings.request_partitions > bus_settings.dead_letter_partitions


def test_a_topic_with_fewer_partitions_than_configured_is_grown_or_the_refusal_logged(bus_settings, caplog):
    """Apache Kafka adds the partitions; the embedded broker cannot (CreatePartitions is not supported) and
    the service starts anyway, with one warning that names the topic and both counts."""
    name = f"grow-{uuid.uuid4().hex[:8]}"
    assert ensure_partitions(bus_settings, {name: 2}) == [name]
    with caplog.at_level(logging.INFO, logger="imgpipe_bus.admin"):
        assert ensure_partitions(bus_settings, {name: 5}) == []
    [count] = partition_counts(bus_settings, [name]).values()
    if BACKEND == "embedded":
        assert count == 2
        [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert warning.getMessage().startswith(
            f"topic {name} keeps its 2 partitions, fewer than the 5 configured: the broker refused to add partitions ("
        )
    else:
        assert count == 5
        assert f"grew topic {name} from 2 to 5 partitions" in caplog.messages


def test_dead_letter_topics_keep_their_letters_until_deleted(bus_settings):
    from confluent_kafka.admin import ConfigResource

    ensure_topics(bus_settings)
    admin = AdminClient({"bootstrap.servers": bus_settings.bootstrap_servers})
    described = admin.describe_configs([ConfigResource("topic", name) for name in topic_names()])
    for resource, future in described.items():
        retention = {name: entry.value for name, entry in future.result().items() if name.startswith("retention.")}
        if resource.name.endswith(".dlq"):
            assert (retention["retention.ms"], retention["retention.bytes"]) == ("-1", "-1"), resource.name
        else:
            assert retention.get("retention.ms") != "-1", resource.name


async def test_rows_spread_over_partitions_and_results_of_a_request_land_together(bus_settings):
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    request_id = uuid.uuid4()
    try:
        await producer.publish_many(
            ROWS_SUBMITTED,
            [
                RowSubmitted(
                    request_id=request_id, row_index=i, serial=i + 1, product_name="P", image_urls=["http://x/y"]
                )
                for i in range(16)
            ],
        )
        await producer.publish_many(
            ROWS_PROCESSED,
            [
                RowProcessed(
                    request_id=request_id, row_index=i, images=[ImageResult(source_url="http://x/y", error_code="e")]
                )
                for i in range(16)
            ],
        )
    finally:
        await producer.close()
    mine = lambda event: event.request_id == request_id  # noqa: E731
    rows = consume(bus_settings.bootstrap_servers, ROWS_SUBMITTED, 16, match=mine)
    assert {key for key, _, _ in rows} == {f"{request_id}:{i}" for i in range(16)}
    assert len({partition for _, partition, _ in rows}) > 1
    results = consume(bus_settings.bootstrap_servers, ROWS_PROCESSED, 16, match=mine)
    assert {key for key, _, _ in results} == {str(request_id)}
    assert len({partition for _, partition, _ in results}) == 1


async def test_faust_consumers_wait_at_most_the_configured_fetch_time():
    app = create_app("probe", BusSettings(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=7))
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 7
    finally:
        await consumer.stop()


def produce_in_one_partition(bootstrap: str, events: list) -> list[tuple[int, int]]:
    """(partition, offset) of each event, produced with one key."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False})
    stored: list[tuple[int, int]] = []
    for event in events:
        producer.produce(
            REQUESTS_ACCEPTED.name,
            key=event.partition_key().encode(),
            value=encode(event),
            on_delivery=lambda err, msg: stored.append((msg.partition(), msg.offset())),
        )
    assert producer.flush(30) == 0
    return stored


def committed(bootstrap: str, group: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [position] = consumer.committed([TopicPartition(REQUESTS_ACCEPTED.name, partition)], timeout=10)
        return position.offset
    finally:
        consumer.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("batches", [False, True], ids=["each", "batches"])
async def test_a_stopping_app_commits_no_offset_past_a_message_it_did_not_handle(bus_settings, batches):
    """A handler still running when the drain times out is cancelled: its message, and every one after
    it, is delivered again to the next consumer of the group."""
    ensure_topics(bus_settings)
    settings = bus_settings.model_copy(update={"drain_timeout_s": 0.3})
    group, mine = f"stopping-{uuid.uuid4().hex[:6]}", uuid.uuid4()
    events = [RequestAccepted(request_id=mine, rows_total=n + 1, images_total=1) for n in range(12)]
    stuck = 5  # rows_total of the event whose handling never ends in the first app
    handled: list[int] = []

    async def first(event) -> None:
        if event.request_id == mine:
            if event.rows_total == stuck:
                await asyncio.Event().wait()
            handled.append(event.rows_total)

    app = await run_agent(settings, group, batches, first)
    try:
        await eventually(lambda: app.consumer.assignment(), 60, "an assignment")
        [(partition, _), *_] = stored = produce_in_one_partition(settings.bootstrap_servers, events)
        # Every event but the stuck one; of batches, those before the stuck one's batch.
        expected = stuck - 1 if batches else len(events) - 1
        await eventually(lambda: len(handled) >= expected, 60, "the others handled")
    finally:
        await app.stop()
    stuck_offset = stored[stuck - 1][1]
    # Up to the stuck one, and no further: every message handled before it is committed (of batches, those
    # of the batches before its own, of at most 3 events).
    lowest = stuck_offset - 2 if batches else stuck_offset
    assert lowest <= committed(settings.bootstrap_servers, group, partition) <= stuck_offset

    again: list[int] = []

    async def second(event) -> None:
        if event.request_id == mine:
            again.append(event.rows_total)

    app = await run_agent(settings, group, batches, second)
    try:
        await eventually(lambda: set(range(stuck, len(events) + 1)) <= set(again), 60, "the rest delivered again")
    finally:
        await app.stop()
