"""``imgpipe dlq replay`` reports a replay as done only once the broker has acknowledged every letter."""

import pytest

from imgpipe_bus import BusSettings, ensure_topics
from imgpipe_ops.dlq import DeadLetter, ReplayFailed, replay
from imgpipe_ops.processes import free_port
from imgpipe_schemas.topics import REQUESTS_COMPLETED


def letter() -> DeadLetter:
    return DeadLetter(
        f"{REQUESTS_COMPLETED.name}.dlq", 0, 7, b"key", b"{}", [("dlq.origin.topic", REQUESTS_COMPLETED.name.encode())]
    )


def test_letters_the_broker_never_acknowledged_are_a_failure_not_a_replay():
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(ReplayFailed, match=r"2 of 2 dead letter\(s\) not replayed .*still in their dead-letter topics"):
        replay(nobody, [letter(), letter()], timeout_s=1)


def test_letters_acknowledged_by_the_broker_are_replayed(infra):
    ensure_topics(BusSettings(bootstrap_servers=infra.bootstrap))
    assert replay(infra.bootstrap, [letter()], timeout_s=10) == 1
