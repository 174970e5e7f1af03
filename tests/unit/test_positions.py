"""A broker too slow to serve a position within the probe's time says nothing of it: the message is not
taken for gone (which would re-publish a row that waits), unless its offset is outside the log."""

import pytest

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


def test_a_position_inside_the_log_that_a_slow_broker_does_not_serve_is_waiting(slow_broker):
    settings = BusSettings(bootstrap_servers="slow:9092", probe_timeout_s=0.01)
    within, at_the_end, beyond = Position(0, 5), Position(0, 100), Position(1, 250)
    found = positions.states(settings, "workers", "rows", {within: b"k", at_the_end: b"k", beyond: b"k"})
    assert found == {within: State.WAITING, at_the_end: State.GONE, beyond: State.GONE}
