"""A Publisher in memory: what a handler published, for the test to look at."""

from collections.abc import Iterable

from imgpipe_bus.positions import Position
from imgpipe_schemas import Event, Topic


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[Topic, Event]] = []

    async def publish(self, topic: Topic, event: Event, headers: dict[str, bytes] | None = None) -> None:
        self.published.append((topic, event))

    async def publish_many(
        self, topic: Topic, events: Iterable[Event], headers: dict[str, bytes] | None = None
    ) -> list[Position]:
        self.published += [(topic, event) for event in events]
        return []
