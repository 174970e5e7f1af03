"""Dead-letter topics: ``<topic>.dlq``, one per topic, with headers that say where a message came from
and why it could not be processed. The original key, value and headers are kept."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from imgpipe_bus.producer import EventProducer

DLQ_SUFFIX = ".dlq"
HEADER_PREFIX = "dlq."
REPLAY_HEADER = "imgpipe.replay.count"

DEAD_LETTERS = Counter(
    "imgpipe_dead_letters",
    "Messages stored in a dead-letter topic, by the topic they came from and the stage that gave up on them.",
    ["topic", "stage"],
)


def dlq_name(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def origin_of(dlq_topic: str) -> str:
    return dlq_topic.removesuffix(DLQ_SUFFIX)


def replay_count(headers: list[tuple[str, bytes]]) -> int:
    """How many times a message was put back from its dead-letter topic (0: never; a value that is not
    a count counts as never)."""
    value = dict(headers).get(REPLAY_HEADER) or b"0"
    try:
        return max(0, int(value))
    except ValueError:
        return 0


@dataclass(frozen=True)
class Letter:
    """A consumed message as plain data, to be kept (say in MongoDB) and dead-lettered later."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, message: Any) -> "Letter":
        return cls(
            message.topic, message.partition, message.offset, message.timestamp, message.key, message.value,
            _headers(message),
        )

    @property
    def replays(self) -> int:
        return replay_count(self.headers)

    def to_document(self) -> dict:
        return {**self.__dict__, "headers": [list(header) for header in self.headers]}

    @classmethod
    def from_document(cls, document: dict) -> "Letter":
        return cls(**{**document, "headers": [(key, bytes(value)) for key, value in document["headers"]]})


@dataclass(frozen=True)
class Failure:
    stage: str
    exception: BaseException
    attempts: int
    first_failure: datetime
    last_failure: datetime


def dead_letter_headers(message: Any, group: str, failure: Failure) -> list[tuple[str, bytes]]:
    """Kafka Connect style context headers, after the message's own headers (minus earlier dlq ones)."""
    context = {
        "origin.topic": message.topic,
        "origin.partition": message.partition,
        "origin.offset": message.offset,
        "origin.timestamp": _iso(message.timestamp),
        "consumer.group": group,
        "stage": failure.stage,
        "exception.class": f"{type(failure.exception).__module__}.{type(failure.exception).__qualname__}",
        "exception.message": str(failure.exception)[:4000],
        "attempts": failure.attempts,
        "first.failure": failure.first_failure.isoformat(),
        "last.failure": failure.last_failure.isoformat(),
    }
    kept = [(k, v) for k, v in _headers(message) if not k.startswith(HEADER_PREFIX)]
    return kept + [(HEADER_PREFIX + key, str(value).encode()) for key, value in context.items()]


class DeadLetters:
    def __init__(self, producer: EventProducer, group: str) -> None:
        self._producer = producer
        self._group = group

    async def send(self, message: Any, failure: Failure) -> None:
        """Every service dead-letters through here, so that ``imgpipe_dead_letters_total`` counts them all."""
        await self._producer.publish_raw(
            dlq_name(message.topic), message.key, message.value, dead_letter_headers(message, self._group, failure)
        )
        DEAD_LETTERS.labels(message.topic, failure.stage).inc()


def _headers(message: Any) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(key, value if isinstance(value, bytes) else str(value).encode()) for key, value in items]


def _iso(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
