"""What handlers ask of the bus, as Protocols: a handler's adapters are typed with these, so that a test's
fake and the real EventProducer or DeadLetters are checked against the same interface."""

from collections.abc import Iterable
from typing import Any, Protocol

from imgpipe_bus.dead_letters import Failure
from imgpipe_bus.positions import Position
from imgpipe_schemas import Event, Topic


class Publisher(Protocol):
    async def publish(self, topic: Topic, event: Event, headers: dict[str, bytes] | None = None) -> None: ...

    async def publish_many(
        self, topic: Topic, events: Iterable[Event], headers: dict[str, bytes] | None = None
    ) -> list[Position]: ...


class DeadLetterSink(Protocol):
    async def send(self, message: Any, failure: Failure) -> None: ...
