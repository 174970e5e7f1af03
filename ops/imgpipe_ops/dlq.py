"""``imgpipe dlq list|show|replay``: read the dead-letter topics and put chosen letters back."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from imgpipe_bus import dlq_name, origin_of
from imgpipe_bus.dead_letters import HEADER_PREFIX, REPLAY_HEADER, replay_count
from imgpipe_schemas import TOPICS


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def context(self, name: str) -> str:
        for key, value in self.headers:
            if key == HEADER_PREFIX + name:
                return value.decode(errors="replace")
        return ""

    @property
    def origin(self) -> str:
        return self.context("origin.topic") or origin_of(self.topic)

    @property
    def request_id(self) -> str:
        try:
            return str(json.loads(self.value or b"").get("request_id", ""))
        except (ValueError, AttributeError):
            return ""

    @property
    def truncated(self) -> bool:
        """Stored cut short because it was too large: not the original message, so never replayed."""
        return bool(self.context("truncated"))

    @property
    def replays(self) -> int:
        return replay_count(self.headers)

    @property
    def ref(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Filters:
    topic: str | None = None
    request_id: str | None = None
    error: str | None = None
    ref: str | None = None

    def match(self, letter: DeadLetter) -> bool:
        return (
            (not self.topic or self.topic in (letter.topic, letter.origin))
            and (not self.request_id or letter.request_id == self.request_id)
            and (not self.error or self.error in letter.context("exception.class"))
            and (not self.ref or letter.ref == self.ref)
        )


def read(bootstrap: str, filters: Filters, idle_s: float = 2.0) -> Iterator[DeadLetter]:
    """Every dead letter from the start of each dead-letter topic, until none arrives for ``idle_s``
    (the broker's end offsets are not relied upon)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "imgpipe-dlq-cli", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=10)
        names = [dlq_name(topic.name) for topic in TOPICS if dlq_name(topic.name) in metadata.topics]
        consumer.assign(
            [TopicPartition(name, p, OFFSET_BEGINNING) for name in names for p in metadata.topics[name].partitions]
        )
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            last = time.monotonic()
            # A message read without an error has its topic, partition and offset.
            letter = DeadLetter(
                cast(str, message.topic()),
                cast(int, message.partition()),
                cast(int, message.offset()),
                message.key(),
                message.value(),
                cast(list[tuple[str, bytes]], message.headers() or []),
            )
            if filters.match(letter):
                yield letter
    finally:
        consumer.close()


class ReplayFailed(Exception):
    """Some dead letters were not confirmed back on their topics. They are still in their dead-letter
    topics: replaying them again is safe (every stage handles a message delivered twice)."""


def replay(bootstrap: str, letters: list[DeadLetter], timeout_s: float = 30.0) -> int:
    """Re-produces each letter to its origin topic with its original key, value and headers, plus a
    replay counter; the context headers of the dead letter are dropped. Returns how many the broker
    acknowledged, which is all of them: raises ReplayFailed when any was refused, or not acknowledged
    within ``timeout_s``."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": False, "message.timeout.ms": int(timeout_s * 1000)}
    )
    errors: list[str] = []
    if cut := [letter.ref for letter in letters if letter.truncated]:
        raise ReplayFailed(
            f"{len(cut)} dead letter(s) were stored cut short and cannot be replayed: {', '.join(cut[:5])}"
        )
    for letter in letters:
        headers = [(k, v) for k, v in letter.headers if not k.startswith(HEADER_PREFIX) and k != REPLAY_HEADER]
        headers.append((REPLAY_HEADER, str(letter.replays + 1).encode()))
        producer.produce(
            letter.origin,
            key=letter.key,
            value=letter.value,
            headers=cast(Any, headers),
            on_delivery=lambda err, _: errors.append(str(err)) if err else None,
        )
    undelivered = producer.flush(timeout_s)
    if undelivered or errors:
        reason = errors[0] if errors else f"no acknowledgement from {bootstrap} within {timeout_s:g} s"
        raise ReplayFailed(
            f"{undelivered + len(errors)} of {len(letters)} dead letter(s) not replayed ({reason}); "
            "they are still in their dead-letter topics, and replaying them again is safe"
        )
    return len(letters)


def summary_line(letter: DeadLetter) -> str:
    return (
        f"{letter.ref:<40} origin={letter.origin} request={letter.request_id or '-'} "
        f"stage={letter.context('stage')} error={letter.context('exception.class')} "
        f"attempts={letter.context('attempts')} last={letter.context('last.failure')} replays={letter.replays}"
        + (" TRUNCATED" if letter.truncated else "")
    )


def describe(letter: DeadLetter) -> str:
    lines = [letter.ref, f"  key: {letter.key!r}"]
    lines += [f"  {key}: {value.decode(errors='replace')}" for key, value in letter.headers]
    lines.append(f"  value: {(letter.value or b'').decode(errors='replace')}")
    return "\n".join(lines)
