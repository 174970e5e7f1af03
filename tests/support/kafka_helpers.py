import time

from confluent_kafka import Consumer

from imgpipe_bus import decode
from imgpipe_schemas import Topic


def consume(bootstrap: str, topic: Topic, count: int, timeout: float = 30.0, match=None) -> list[tuple]:
    """(key, partition, event) of the first ``count`` events on ``topic`` (that ``match``), from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic.name])
    found: list[tuple] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            event = decode(topic, message.value())
            if match is None or match(event):
                found.append(((message.key() or b"").decode(), message.partition(), event))
    finally:
        consumer.close()
    assert len(found) >= count, f"only {len(found)} of {count} events on {topic.name} within {timeout} s"
    return found
