"""An asyncio face on confluent-kafka's Producer.

confluent-kafka's own AIOProducer cannot send headers, which dead-letter and replay messages need,
so delivery reports are bridged to asyncio futures here instead.

A failed send is one of two things. An outage (broker down, leader moving, timed out) raises
KafkaException, which every stage waits out. A refusal of this message itself (too large, invalid)
raises MessageRejected, which is that message's failure: waiting would never end, and would stop every
message behind it. librdkafka marks few delivery errors ``retriable()``, so the outage codes are listed.
"""

import asyncio
import threading
from collections.abc import Iterable
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from imgpipe_bus.codec import encode
from imgpipe_bus.positions import Position
from imgpipe_bus.settings import BusSettings
from imgpipe_schemas import Event, Topic

_OUTAGE_CODES = frozenset(
    getattr(KafkaError, name)
    for name in (
        "_TRANSPORT",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_ALL_BROKERS_DOWN",
        "_RESOLVE",
        "_QUEUE_FULL",
        "_WAIT_COORD",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "_DESTROY",
        "_NODE_UPDATE",
        "_PREV_IN_PROGRESS",
        "_IN_PROGRESS",
        "_NOENT",
        "UNKNOWN",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_LEADER_OR_FOLLOWER",
        "UNKNOWN_TOPIC_OR_PART",
        "BROKER_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "NOT_CONTROLLER",
        "KAFKA_STORAGE_ERROR",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "THROTTLING_QUOTA_EXCEEDED",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "COORDINATOR_LOAD_IN_PROGRESS",
    )
    if hasattr(KafkaError, name)
)


class MessageRejected(Exception):
    """The broker or the client refused this message itself (too large, malformed): sending it again
    cannot succeed. Deliberately not a KafkaException, which the stages wait out as an outage."""

    def __init__(self, topic: str, size: int, error: KafkaError) -> None:
        super().__init__(f"a message of {size} bytes for {topic} was refused: {error.name()}: {error.str()}")
        self.topic = topic
        self.size = size
        self.code = error.code()


def is_outage(error: KafkaError) -> bool:
    """An error that says the broker is unreachable or busy, as opposed to one about the message."""
    return error.retriable() or error.code() in _OUTAGE_CODES


def send_failure(error: KafkaError, topic: str, size: int) -> Exception:
    return KafkaException(error) if is_outage(error) else MessageRejected(topic, size, error)


class EventProducer:
    def __init__(self, settings: BusSettings) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "client.id": settings.client_id,
                "linger.ms": settings.linger_ms,
                "message.max.bytes": settings.max_message_bytes,
                "acks": "all",
                "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
                # The embedded broker does not support idempotent producers.
                "enable.idempotence": False,
            }
        )
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    async def publish(self, topic: Topic, event: Event, headers: dict[str, bytes] | None = None) -> None:
        await self.publish_many(topic, [event], headers)

    async def publish_many(
        self, topic: Topic, events: Iterable[Event], headers: dict[str, bytes] | None = None
    ) -> list[Position]:
        """Returns once the broker has acknowledged every event, with where each was stored, in order;
        raises if any was not delivered."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Position]] = []
        for event in events:
            future = loop.create_future()
            pending.append(future)
            self._produce(topic.name, event.partition_key().encode(), encode(event), headers, future, loop)
        return await asyncio.gather(*pending)

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Produces a message as it is: for dead letters and replays, which keep the original bytes."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._produce(topic, key, value, headers, future, loop)
        await future

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, bytes] | list[tuple[str, bytes]] | None,
        future: asyncio.Future[Position],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        size = len(value or b"") + len(key or b"")

        def delivered(err: KafkaError | None, msg: Message) -> None:
            # A delivered message has both; only one that failed may lack them.
            outcome = (
                send_failure(err, topic, size) if err else Position(cast(int, msg.partition()), cast(int, msg.offset()))
            )
            loop.call_soon_threadsafe(_resolve, future, outcome)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=cast(Any, headers), on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise send_failure(exc.args[0], topic, size) from exc

    async def close(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self._producer.flush, timeout)
        self._stopping.set()
        await asyncio.to_thread(self._poller.join)
        del self._producer  # releases librdkafka's handle and its connection threads now


def _resolve(future: asyncio.Future[Position], outcome: Position | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
