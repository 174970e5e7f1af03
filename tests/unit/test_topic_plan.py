"""Which topics start-up creates, grows or leaves alone, and how many partitions each role gets."""

import pytest
from pydantic import ValidationError

from imgpipe_bus import BusSettings
from imgpipe_bus.admin import TopicPlan, plan_topics, topic_config, topic_names, wanted_partitions


def test_each_role_gets_its_own_partition_count():
    settings = BusSettings(partitions=12, request_partitions=3, dead_letter_partitions=1)
    assert wanted_partitions(settings) == {
        "imgpipe.rows.submitted": 12,
        "imgpipe.rows.processed": 12,
        "imgpipe.requests.accepted": 3,
        "imgpipe.requests.completed": 3,
        "imgpipe.rows.submitted.dlq": 1,
        "imgpipe.rows.processed.dlq": 1,
        "imgpipe.requests.accepted.dlq": 1,
        "imgpipe.requests.completed.dlq": 1,
    }
    assert sorted(wanted_partitions(settings)) == sorted(topic_names())


def test_the_partitions_setting_still_sizes_the_rows_topics(monkeypatch):
    """An existing deployment's IMGPIPE_KAFKA_PARTITIONS keeps sizing the topics the workers share."""
    monkeypatch.setenv("IMGPIPE_KAFKA_PARTITIONS", "24")
    monkeypatch.setenv("IMGPIPE_KAFKA_REQUEST_PARTITIONS", "2")
    monkeypatch.setenv("IMGPIPE_KAFKA_DEAD_LETTER_PARTITIONS", "3")
    wanted = wanted_partitions(BusSettings())
    assert wanted["imgpipe.rows.submitted"] == wanted["imgpipe.rows.processed"] == 24
    assert wanted["imgpipe.requests.completed"] == 2 and wanted["imgpipe.rows.submitted.dlq"] == 3


def test_the_defaults_give_rows_many_partitions_and_the_rest_few(monkeypatch):
    for role in ("", "REQUEST_", "DEAD_LETTER_"):
        monkeypatch.delenv(f"IMGPIPE_KAFKA_{role}PARTITIONS", raising=False)
    wanted = wanted_partitions(BusSettings())
    assert wanted["imgpipe.rows.submitted"] == 4
    assert wanted["imgpipe.requests.accepted"] == 3
    assert wanted["imgpipe.requests.completed.dlq"] == 1


def test_missing_topics_are_created_with_their_counts():
    assert plan_topics({"a": 4, "b": 1}, {}) == TopicPlan(create={"a": 4, "b": 1})


def test_a_topic_with_fewer_partitions_is_grown_and_one_with_enough_is_left_alone():
    plan = plan_topics({"a": 12, "b": 3, "c": 1}, {"a": 4, "b": 3, "c": 1, "unrelated": 2})
    assert plan == TopicPlan(grow={"a": (4, 12)})


def test_a_topic_with_more_partitions_than_configured_is_never_shrunk():
    """Kafka cannot remove partitions: a deployment that lowers a count keeps the partitions it has."""
    plan = plan_topics({"a": 3, "b": 2}, {"a": 12, "b": 1})
    assert plan == TopicPlan(grow={"b": (1, 2)}, larger={"a": (12, 3)})


def test_topics_require_the_configured_copies_of_each_message():
    assert topic_config("imgpipe.rows.submitted", 2) == {"min.insync.replicas": "2"}
    assert topic_config("imgpipe.rows.submitted.dlq", 2) == {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "min.insync.replicas": "2",
    }
    assert topic_config("imgpipe.rows.submitted") == {}


def test_more_required_copies_than_copies_is_refused_with_both_settings_named():
    with pytest.raises(ValidationError, match=r"3 is more than IMGPIPE_KAFKA_REPLICATION_FACTOR \(2\)"):
        BusSettings(replication_factor=2, min_insync_replicas=3)
    assert BusSettings(replication_factor=3, min_insync_replicas=2).min_insync_replicas == 2
