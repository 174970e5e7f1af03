"""Topics are created explicitly, never by the broker on first use."""

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from imgpipe_bus.dead_letters import dlq_name
from imgpipe_bus.settings import BusSettings
from imgpipe_schemas import TOPICS

log = logging.getLogger(__name__)


def topic_names() -> list[str]:
    """Every topic and its dead-letter topic."""
    return [name for topic in TOPICS for name in (topic.name, dlq_name(topic.name))]


# Dead letters are the replay store: kept until an operator deletes them, never aged out by retention.
DEAD_LETTER_RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}


def topic_config(name: str) -> dict[str, str]:
    return dict(DEAD_LETTER_RETENTION) if name.endswith(".dlq") else {}


def ensure_topics(settings: BusSettings, timeout: float = 30.0) -> list[str]:
    """Creates every missing topic; returns the names it created. Waits for the broker up to ``timeout``."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    existing = _existing_topics(admin, timeout)
    missing = [name for name in topic_names() if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(name, settings.partitions, settings.replication_factor, config=topic_config(name))
            for name in missing
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
    log.info("created topics %s with %d partitions", created, settings.partitions)
    return created


def broker_reachable(settings: BusSettings, timeout: float = 2.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def _existing_topics(admin: AdminClient, timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return set(admin.list_topics(timeout=min(5.0, timeout)).topics)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
