"""An asyncio face on confluent-kafka's Producer.

confluent-kafka's own AIOProducer cannot send headers, which dead-letter and replay messages need,
so delivery reports are bridged to asyncio futures here instead.
"""

import asyncio
import threading
from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer

from imgpipe_bus.codec import encode
from imgpipe_bus.positions import Position
from imgpipe_bus.settings import BusSettings
from imgpipe_schemas import Event, Topic


class EventProducer:
    def __init__(self, settings: BusSettings) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "client.id": settings.client_id,
                "linger.ms": settings.linger_ms,
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
        pending = []
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

    def _produce(self, topic, key, value, headers, future, loop) -> None:
        def delivered(err, msg) -> None:
            outcome = KafkaException(err) if err else Position(msg.partition(), msg.offset())
            loop.call_soon_threadsafe(_resolve, future, outcome)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.05)

    async def close(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self._producer.flush, timeout)
        self._stopping.set()
        await asyncio.to_thread(self._poller.join)
        self._producer = None  # releases librdkafka's handle and its connection threads now


def _resolve(future: asyncio.Future, outcome: Position | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
