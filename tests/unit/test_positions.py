"""A broker too slow to serve a position within the probe's time says nothing of it: the message is not
taken for gone (which would re-publish at once, and count a round for, a row that waits), whatever the log's
range as the broker reports it: the embedded broker reports it wrong."""

import pytest

from imgpipe_bus import BusSettings, positions
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
        return 0, 1  # as the embedded broker answers for a partition of many messages

    def close(self) -> None:
        pass


@pytest.fixture
def slow_broker(monkeypatch):
    monkeypatch.setattr(positions, "Consumer", SlowBroker)


SETTINGS = BusSettings(bootstrap_servers="slow:9092", probe_timeout_s=0.01)


def test_a_position_that_a_slow_broker_does_not_serve_is_unknown_whatever_its_watermarks(slow_broker):
    within, at_the_end, beyond = Position(0, 5), Position(0, 100), Position(1, 250)
    found = positions.states(SETTINGS, "workers", "rows", {within: b"k", at_the_end: b"k", beyond: b"k"})
    assert found == {within: State.UNKNOWN, at_the_end: State.UNKNOWN, beyond: State.UNKNOWN}


def test_the_positions_between_two_unserved_ones_are_unknown_too(slow_broker):
    """Not read (that would cost a probe's time each), and not taken for waiting either."""
    middles = [Position(0, offset) for offset in range(6, 9)]
    found = positions.states(
        SETTINGS, "workers", "rows", {Position(0, 5): b"k", **dict.fromkeys(middles, b"k"), Position(0, 9): b"k"}
    )
    assert set(found.values()) == {State.UNKNOWN}
