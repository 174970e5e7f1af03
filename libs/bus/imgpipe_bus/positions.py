"""Where messages are, and where a consumer group stands: what tells a message that waits in its topic from
one the broker no longer has.

A message waits while it is still at its offset and its consumer group has not committed past it. It is
gone when that offset holds nothing, or another message: the log was truncated, or the broker restarted
with an empty one (the embedded broker keeps its log in memory). An offset the broker does not serve in
time is never taken for gone: its state is unknown. Only the broker's own answer (the offset holds another
message, or is out of range) says gone; the log's range as the broker reports it (its watermarks) is not
asked, as the embedded broker reports it wrong.
"""

import time
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from imgpipe_bus.settings import BusSettings

# Each probe gets a group of its own, never committed to: assign() needs a group id, and none is joined.
PROBE_GROUP = "imgpipe-position-probe"


class Position(NamedTuple):
    partition: int
    offset: int


def committed_offsets(settings: BusSettings, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """The next offset ``group`` will read on each partition of ``topic``; a partition it never committed
    on is left out. Raises KafkaException when the broker cannot be asked."""
    consumer = Consumer(_config(settings, group))
    try:
        wanted = [TopicPartition(topic, partition) for partition in sorted(set(partitions))]
        if not wanted:
            return {}
        committed = consumer.committed(wanted, timeout=settings.probe_timeout_s)
        return {tp.partition: tp.offset for tp in committed if tp.error is None and tp.offset >= 0}
    finally:
        consumer.close()


class _Unserved:
    def __repr__(self) -> str:
        return "UNSERVED"


# A position inside the log's range that the broker did not serve within ``probe_timeout_s`` (a slow
# broker): nothing is known of it, so it is never taken for gone.
UNSERVED = _Unserved()


def keys_at(
    settings: BusSettings, topic: str, positions: Iterable[Position]
) -> dict[Position, bytes | None | _Unserved]:
    """The key of the message at each position; None where the position holds no message (the broker says
    its offset is out of the log's range, or it holds another message), UNSERVED where the broker did not
    serve it in time (a slow broker, or an offset at or past the log's end that the broker does not refuse).
    One read per partition at a time, so a few positions per partition are read in a few round trips; a
    position at the log's end costs ``probe_timeout_s``."""
    by_partition: dict[int, list[int]] = {}
    for position in set(positions):
        by_partition.setdefault(position.partition, []).append(position.offset)
    found: dict[Position, bytes | None | _Unserved] = {}
    if not by_partition:
        return found
    consumer = Consumer({**_config(settings, PROBE_GROUP), "auto.offset.reset": "error", "fetch.wait.max.ms": 10})
    try:
        pending = {partition: sorted(offsets) for partition, offsets in by_partition.items()}
        while pending:
            consumer.assign([TopicPartition(topic, partition, offsets[0]) for partition, offsets in pending.items()])
            _read_heads(consumer, pending, found, settings.probe_timeout_s)
            pending = {partition: offsets for partition, offsets in pending.items() if offsets}
    finally:
        consumer.close()
    return found


def _read_heads(
    consumer: Consumer,
    pending: dict[int, list[int]],
    found: dict[Position, bytes | None | _Unserved],
    timeout_s: float,
) -> None:
    """Reads the first message of each partition assigned at ``pending[partition][0]``; pops that offset."""
    waiting = {partition: offsets[0] for partition, offsets in pending.items()}
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        message = consumer.poll(max(0.0, min(0.5, deadline - time.monotonic())))
        if message is None:
            continue
        partition = message.partition()
        if message.error() is not None:
            # Offset out of range (auto.offset.reset=error): the position holds nothing.
            if partition in waiting:
                found[Position(partition, waiting.pop(partition))] = None
            continue
        if partition not in waiting:
            continue
        offset = waiting.pop(partition)
        # Later messages of an answered partition are ignored, not paused: a pause outlives the next assign().
        found[Position(partition, offset)] = message.key() if message.offset() == offset else None
    for partition, offset in waiting.items():
        found[Position(partition, offset)] = UNSERVED
    for partition in pending:
        pending[partition].pop(0)


class State(StrEnum):
    WAITING = "waiting"  # at its offset, not yet committed past by the group: queued or being handled
    READ = "read"  # the group committed past it: it was handled
    GONE = "gone"  # its offset holds nothing, or another message
    UNKNOWN = "unknown"  # inside the log, but the broker did not serve it in time


def states(settings: BusSettings, group: str, topic: str, messages: Mapping[Position, bytes]) -> dict[Position, State]:
    """What became of each message, given where it was stored and its key, as ``group`` reads ``topic``.

    A log loses messages only from its start (retention) or all at once (a broker that restarted empty),
    so when the first and the last unread message of a partition are where they were, so is every one
    between them: a big request costs two reads per partition, not one per message. When both are gone, so
    is every one between; when one is there and the other gone, each between is read; when the broker
    served either not, nothing is known of those between."""
    committed = committed_offsets(settings, group, topic, (position.partition for position in messages))
    unread: dict[int, list[Position]] = {}
    for position in sorted(messages):
        if position.offset >= committed.get(position.partition, 0):
            unread.setdefault(position.partition, []).append(position)
    keys = keys_at(settings, topic, {p for positions in unread.values() for p in (positions[0], positions[-1])})

    def there(position: Position) -> bool:
        return keys.get(position) == messages[position]

    def gone(position: Position) -> bool:
        return position in keys and keys[position] is not UNSERVED and not there(position)

    def torn(first: Position, last: Position) -> bool:
        return (there(first) and gone(last)) or (gone(first) and there(last))

    middles = [
        position for positions in unread.values() if torn(positions[0], positions[-1]) for position in positions[1:-1]
    ]
    keys.update(keys_at(settings, topic, middles))
    found = {}
    for position in messages:
        if position.offset < committed.get(position.partition, 0):
            found[position] = State.READ
            continue
        first, last = unread[position.partition][0], unread[position.partition][-1]
        if position in keys:
            found[position] = (
                State.UNKNOWN if keys[position] is UNSERVED else State.WAITING if there(position) else State.GONE
            )
        elif there(first) and there(last):
            found[position] = State.WAITING
        elif gone(first) and gone(last):
            found[position] = State.GONE
        else:
            found[position] = State.UNKNOWN
    return found


def _config(settings: BusSettings, group: str) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "enable.auto.commit": False}


def caught_up(settings: BusSettings, group: str, topic: str) -> bool:
    """True when ``group`` has nothing unread on any partition of ``topic``: no message follows its committed
    offset within ``probe_timeout_s``. Every message the topic held before the call has then been handled."""
    consumer = Consumer({**_config(settings, PROBE_GROUP), "fetch.wait.max.ms": 10})
    try:
        metadata = consumer.list_topics(topic, timeout=settings.probe_timeout_s).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = sorted(metadata.partitions)
        committed = committed_offsets(settings, group, topic, partitions)
        consumer.assign([TopicPartition(topic, p, committed.get(p, OFFSET_BEGINNING)) for p in partitions])
        deadline = time.monotonic() + settings.probe_timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(max(0.0, min(0.5, deadline - time.monotonic())))
            if message is not None and message.error() is None:
                return False
        return True
    finally:
        consumer.close()
