"""A message too large to send is that message's failure, never a broker outage that stops the stage."""

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from imgpipe_bus import EventProducer, dlq_name, encode, ensure_topics
from imgpipe_bus.dead_letters import KEPT_VALUE_BYTES, TRUNCATED_HEADER
from imgpipe_bus.producer import MessageRejected
from imgpipe_schemas import RequestAccepted
from imgpipe_schemas.topics import REQUESTS_ACCEPTED
from tests.support.agents import run_agent
from tests.waiting import eventually


def produce_raw(bootstrap: str, key: bytes, values: list[bytes]) -> None:
    """As a direct producer with a larger message limit than imgpipe's own would."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "message.max.bytes": 4_000_000})
    for value in values:
        producer.produce(REQUESTS_ACCEPTED.name, key=key, value=value)
    assert producer.flush(30) == 0


def dead_letters_of(bootstrap: str, key: bytes, count: int, timeout_s: float = 30.0) -> list:
    """The first ``count`` letters with ``key`` in the dead-letter topic of REQUESTS_ACCEPTED."""
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    topic = dlq_name(REQUESTS_ACCEPTED.name)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found, deadline = [], time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error() and message.key() == key:
                found.append(message)
    finally:
        consumer.close()
    assert len(found) >= count, f"{len(found)} of {count} dead letters within {timeout_s} s"
    return found


async def test_a_message_refused_for_its_size_is_rejected_not_an_outage(bus_settings):
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    try:
        with pytest.raises(MessageRejected, match="MSG_SIZE_TOO_LARGE"):
            await producer.publish_raw(REQUESTS_ACCEPTED.name, b"k", b"x" * 2_000_000, [])
    finally:
        await producer.close()


@pytest.mark.timeout(120)
async def test_junk_too_large_to_dead_letter_as_it_is_is_stored_cut_short_and_the_stage_goes_on(bus_settings):
    ensure_topics(bus_settings)
    mine = uuid.uuid4()
    key = str(mine).encode()
    handled: list[int] = []

    async def handle(event) -> None:
        if event.request_id == mine:
            handled.append(event.rows_total)

    app = await run_agent(bus_settings, f"junk-{mine.hex[:6]}", False, handle)
    try:
        await eventually(lambda: app.consumer.assignment(), 60, "an assignment")
        after = RequestAccepted(request_id=mine, rows_total=7, images_total=1)
        produce_raw(bus_settings.bootstrap_servers, key, [b"\xff" * 1_040_000, encode(after)])
        await eventually(lambda: handled == [7], 60, "the message after the junk handled")
    finally:
        await app.stop()
    [letter] = dead_letters_of(bus_settings.bootstrap_servers, key, 1)
    headers = dict(letter.headers())
    assert len(letter.value()) == KEPT_VALUE_BYTES
    assert b"value of 1040000 bytes cut to" in headers[TRUNCATED_HEADER]
    assert headers["dlq.exception.class"] == b"imgpipe_bus.codec.PoisonMessage"


@pytest.mark.timeout(120)
async def test_a_handler_whose_output_is_refused_dead_letters_its_message_and_the_stage_goes_on(bus_settings):
    ensure_topics(bus_settings)
    mine = uuid.uuid4()
    key = str(mine).encode()
    producer = EventProducer(bus_settings)
    handled: list[int] = []

    async def handle(event) -> None:
        if event.request_id == mine:
            if event.rows_total == 1:
                await producer.publish_raw(REQUESTS_ACCEPTED.name, b"out", b"y" * 2_000_000, [])
            handled.append(event.rows_total)

    app = await run_agent(bus_settings, f"refused-{mine.hex[:6]}", False, handle)
    try:
        await eventually(lambda: app.consumer.assignment(), 60, "an assignment")
        events = [RequestAccepted(request_id=mine, rows_total=n, images_total=1) for n in (1, 2)]
        produce_raw(bus_settings.bootstrap_servers, key, [encode(event) for event in events])
        await eventually(lambda: handled == [2], 60, "the message after the refused one handled")
    finally:
        await app.stop()
        await producer.close()
    [letter] = dead_letters_of(bus_settings.bootstrap_servers, key, 1)
    headers = dict(letter.headers())
    assert headers["dlq.exception.class"] == b"imgpipe_bus.producer.MessageRejected"
    assert headers["dlq.attempts"] == b"3"
    assert TRUNCATED_HEADER not in headers
