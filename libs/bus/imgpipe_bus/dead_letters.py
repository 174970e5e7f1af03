"""Dead-letter topics: ``<topic>.dlq``, one per topic, with headers that say where a message came from
and why it could not be processed. The original key, value and headers are kept, unless the copy is
too large to store: then the value is cut short, with a ``dlq.truncated`` header that says so, because
a dead letter that cannot be stored would stop its stage for ever."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from imgpipe_bus.producer import EventProducer, MessageRejected

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
HEADER_PREFIX = "dlq."
REPLAY_HEADER = "imgpipe.replay.count"
TRUNCATED_HEADER = HEADER_PREFIX + "truncated"
# What is kept of a message too large to store as it is: enough to see what it was.
KEPT_VALUE_BYTES = 64 * 1024
KEPT_KEY_BYTES = 1024
KEPT_HEADER_BYTES = 16 * 1024

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
class Consumed:
    """A consumed message as plain data, to be kept (say in MongoDB) and dead-lettered later."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, message: Any) -> "Consumed":
        return cls(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.key,
            message.value,
            _headers(message),
        )

    @property
    def replays(self) -> int:
        return replay_count(self.headers)

    def to_document(self) -> dict[str, Any]:
        return {**self.__dict__, "headers": [list(header) for header in self.headers]}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "Consumed":
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
        topic, headers = dlq_name(message.topic), dead_letter_headers(message, self._group, failure)
        try:
            await self._producer.publish_raw(topic, message.key, message.value, headers)
        except MessageRejected as exc:
            log.error(
                "dead letter of %s[%s]@%s stored cut short: %s", message.topic, message.partition, message.offset, exc
            )
            try:
                await self._producer.publish_raw(topic, *cut_short(message.key, message.value, headers))
            except MessageRejected:
                log.critical(
                    "dead letter of %s[%s]@%s stored with its context only: even its cut copy was refused",
                    message.topic,
                    message.partition,
                    message.offset,
                )
                await self._producer.publish_raw(topic, None, None, cut_short(None, None, headers, keep_own=False)[2])
        DEAD_LETTERS.labels(message.topic, failure.stage).inc()


def cut_short(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], keep_own: bool = True
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """A copy of a message small enough to store: the start of its key and value, its own headers only
    if they are small, and a ``dlq.truncated`` header saying what was cut. Never to be replayed."""
    own = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX)]
    context = [(k, v) for k, v in headers if k.startswith(HEADER_PREFIX)]
    if not keep_own or sum(len(k) + len(v) for k, v in own) > KEPT_HEADER_BYTES:
        own = []
    note = (
        f"the message was too large to store: key of {len(key or b'')} bytes cut to {KEPT_KEY_BYTES}, "
        f"value of {len(value or b'')} bytes cut to {KEPT_VALUE_BYTES}, "
        f"{'its own headers kept' if own else 'its own headers dropped'}"
    )
    kept_key = key[:KEPT_KEY_BYTES] if key is not None else None
    kept_value = value[:KEPT_VALUE_BYTES] if value is not None else None
    return kept_key, kept_value, [*own, *context, (TRUNCATED_HEADER, note.encode())]


def _headers(message: Any) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(key, value if isinstance(value, bytes) else str(value).encode()) for key, value in items]


def _iso(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
