"""A broker too slow to serve a position within the probe's time says nothing of it: the message is not
taken for gone (which would re-publish at once a row that waits), unless its offset is outside the log."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from imgpipe_bus import BusSettings
from imgpipe_bus import positions
from imgpipe_bus.positions import Position, State


class SlowBroker:
    """A Consumer whose fetches never answer in time; the log of every partition spans offsets 0–99."""

    def __init__(self, config: dict) -> None:
        pass

    def committed(self, partitions, timeout: float):
        return []

    def assign(self, partitions) -> None:
        pass

    def poll(self, timeout: float):
        return None

    def get_watermark_offsets(self, partition, timeout: float, cached: bool):
        return 0, 100

    def close(self) -> None:
        pass


@pytest.fixture
def slow_broker(monkeypatch):
    monkeypatch.setattr(positions, "Consumer", SlowBroker)


SETTINGS = BusSettings(bootstrap_servers="slow:9092", probe_timeout_s=0.01)


def test_a_position_inside_the_log_that_a_slow_broker_does_not_serve_is_unknown(slow_broker):
    within, at_the_end, beyond = Position(0, 5), Position(0, 100), Position(1, 250)
    found = positions.states(SETTINGS, "workers", "rows", {within: b"k", at_the_end: b"k", beyond: b"k"})
    assert found == {within: State.UNKNOWN, at_the_end: State.GONE, beyond: State.GONE}


def test_a_broker_that_does_not_tell_the_log_s_range_in_time_leaves_every_position_unknown(slow_broker, monkeypatch):
    def no_answer(self, partition, timeout: float, cached: bool):
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    monkeypatch.setattr(SlowBroker, "get_watermark_offsets", no_answer)
    found = positions.states(SETTINGS, "workers", "rows", {Position(0, 5): b"k", Position(0, 10**9): b"k"})
    assert found == {Position(0, 5): State.UNKNOWN, Position(0, 10**9): State.UNKNOWN}
