"""Topics are created explicitly, never by the broker on first use, each with the partitions of its role.

The rows topics carry one event per row and are what many image workers (and assemblers) share: they get
many partitions. The requests topics carry one event per request and the dead-letter topics what failed:
a few partitions serve them. A topic found with fewer partitions than configured is grown (Kafka can add
partitions, never remove them); a broker that cannot grow it (the embedded one) is reported, not fatal:
the topic keeps working with the partitions it has.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions
from confluent_kafka.cimpl import NewTopic

from imgpipe_bus.dead_letters import dlq_name
from imgpipe_bus.settings import BusSettings
from imgpipe_schemas import TOPICS
from imgpipe_schemas.topics import ROWS_PROCESSED, ROWS_SUBMITTED

log = logging.getLogger(__name__)

ROW_TOPICS = frozenset({ROWS_SUBMITTED.name, ROWS_PROCESSED.name})


def topic_names() -> list[str]:
    """Every topic and its dead-letter topic."""
    return [name for topic in TOPICS for name in (topic.name, dlq_name(topic.name))]


def wanted_partitions(settings: BusSettings) -> dict[str, int]:
    """Every topic's partition count by its role: rows, requests or dead letters."""
    wanted = {}
    for topic in TOPICS:
        wanted[topic.name] = settings.partitions if topic.name in ROW_TOPICS else settings.request_partitions
        wanted[dlq_name(topic.name)] = settings.dead_letter_partitions
    return wanted


@dataclass(frozen=True)
class TopicPlan:
    """What start-up does to the broker's topics: create the missing ones, grow the ones with too few
    partitions (name → (partitions now, partitions wanted)). A topic with more partitions than wanted is
    left as it is (``larger``): Kafka cannot remove partitions."""

    create: dict[str, int] = field(default_factory=dict)
    grow: dict[str, tuple[int, int]] = field(default_factory=dict)
    larger: dict[str, tuple[int, int]] = field(default_factory=dict)


def plan_topics(wanted: Mapping[str, int], existing: Mapping[str, int]) -> TopicPlan:
    plan = TopicPlan()
    for name, count in wanted.items():
        have = existing.get(name)
        if have is None:
            plan.create[name] = count
        elif have < count:
            plan.grow[name] = (have, count)
        elif have > count:
            plan.larger[name] = (have, count)
    return plan


# Dead letters are the replay store: kept until an operator deletes them, never aged out by retention.
DEAD_LETTER_RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}


def topic_config(name: str, min_insync_replicas: int | None = None) -> dict[str, str]:
    config = dict(DEAD_LETTER_RETENTION) if name.endswith(".dlq") else {}
    if min_insync_replicas is not None:
        config["min.insync.replicas"] = str(min_insync_replicas)
    return config


def ensure_topics(settings: BusSettings, timeout: float = 30.0) -> list[str]:
    """Creates every missing topic and grows every topic with fewer partitions than its role's setting;
    returns the names it created. Waits for the broker up to ``timeout``."""
    return ensure_partitions(settings, wanted_partitions(settings), timeout)


def ensure_partitions(settings: BusSettings, wanted: Mapping[str, int], timeout: float = 30.0) -> list[str]:
    """``ensure_topics`` for any topics: name → partitions."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    plan = plan_topics(wanted, _existing_topics(admin, timeout))
    if plan.larger:
        log.info(
            "topics keep more partitions than configured (Kafka cannot remove partitions): %s",
            ", ".join(f"{name} has {have}, configured {want}" for name, (have, want) in sorted(plan.larger.items())),
        )
    if plan.grow:
        _grow(admin, plan.grow, timeout)
    if not plan.create:
        return []
    return _create(admin, plan.create, settings, timeout)


def _create(admin: AdminClient, counts: Mapping[str, int], settings: BusSettings, timeout: float) -> list[str]:
    futures = admin.create_topics(
        [
            NewTopic(name, count, settings.replication_factor, config=topic_config(name, settings.min_insync_replicas))
            for name, count in counts.items()
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics %s", ", ".join(f"{name} ({counts[name]} partitions)" for name in created))
    return created


def _grow(admin: AdminClient, grow: Mapping[str, tuple[int, int]], timeout: float) -> None:
    """Adds partitions. A refusal is logged, never raised: the topic works with the partitions it has, and
    a service that cannot start over it would stop the pipeline for less throughput. Another process
    growing the same topic at the same time makes Kafka refuse the second request; the topic then has
    its partitions and nothing is logged but that it grew."""
    futures = admin.create_partitions(
        [NewPartitions(name, want) for name, (_, want) in grow.items()], operation_timeout=timeout
    )
    for name, future in futures.items():
        have, want = grow[name]
        try:
            future.result()
        except KafkaException as exc:
            now = _partitions_of(admin, name, timeout)
            if now is None or now < want:
                log.warning(
                    "topic %s keeps its %d partitions, fewer than the %d configured: the broker refused to add "
                    "partitions (%s)",
                    name,
                    have if now is None else now,
                    want,
                    exc.args[0].str(),
                )
                continue
        log.info("grew topic %s from %d to %d partitions", name, have, want)


def broker_reachable(settings: BusSettings, timeout: float = 2.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def _partitions_of(admin: AdminClient, name: str, timeout: float) -> int | None:
    try:
        topic = admin.list_topics(name, timeout=min(5.0, timeout)).topics.get(name)
    except KafkaException:
        return None
    return len(topic.partitions) if topic is not None and topic.error is None else None


def _existing_topics(admin: AdminClient, timeout: float) -> dict[str, int]:
    """Every topic the broker has, with its partition count."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            topics = admin.list_topics(timeout=min(5.0, timeout)).topics
            return {name: len(metadata.partitions) for name, metadata in topics.items()}
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
