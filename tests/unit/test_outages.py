"""A database or file store that cannot write (a full disk, a quota, a primary gone) is an outage like a lost
connection: a consumer waits it out and dead-letters nothing; the work's own errors are still its failures."""

import errno
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError, OperationFailure, WriteError

from imgpipe_bus import agent_stage, handle_each
from imgpipe_bus.codec import encode
from imgpipe_bus.handling import InFlight, RetryPolicy
from imgpipe_runtime.mongo import OUTAGES
from imgpipe_runtime.outages import is_outage
from imgpipe_schemas import RowSubmitted
from imgpipe_schemas.topics import ROWS_SUBMITTED


def disk_full_bulk() -> BulkWriteError:
    return BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}, {"index": 1, "code": 14031, "errmsg": "x"}]}
    )


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        OSError(errno.EROFS, "Read-only file system"),
        WriteError("Out of disk space", code=14031),
        OperationFailure("Out of disk space", code=14031),
        OperationFailure("not writable primary", code=10107),
        OperationFailure("quota exceeded", code=12501),
        OperationFailure("primary stepped down", code=189),
        OperationFailure("internal server error", code=1),  # the embedded database once its disk filled
        disk_full_bulk(),
        BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "replication timed out"}]}),
        AutoReconnect("connection closed"),
    ],
    ids=repr,
)
def test_a_store_that_cannot_write_is_an_outage(exc):
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError(errno.ENOENT, "No such file"),
        PermissionError(errno.EACCES, "Permission denied"),
        OSError("a chunk is missing"),
        DuplicateKeyError("E11000", code=11000),
        OperationFailure("bad $set", code=2),
        BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}]}),
        ValueError("bad row"),
    ],
    ids=repr,
)
def test_the_works_own_errors_are_not_outages(exc):
    assert not is_outage(exc)


@dataclass
class Message:
    value: bytes
    topic: str = ROWS_SUBMITTED.name
    partition: int = 0
    offset: int = 7
    timestamp: float = 0.0
    key: bytes = b"k"
    headers: list = field(default_factory=list)

    @property
    def tp(self):
        return (self.topic, self.partition)


class OneMessage:
    """A faust stream holding one message."""

    def __init__(self, message: Message) -> None:
        self.message = message

    async def events(self):
        yield SimpleNamespace(message=self.message)


class Producer:
    def __init__(self) -> None:
        self.dead_letters: list[str] = []

    async def publish_raw(self, topic: str, key, value, headers) -> None:
        self.dead_letters.append(topic)


class FailingFor:
    """A handler that raises ``exc`` ``times`` times, then handles the event."""

    def __init__(self, exc: BaseException, times: int) -> None:
        self.exc, self.left, self.handled = exc, times, 0

    async def __call__(self, event, letter) -> None:
        if self.left:
            self.left -= 1
            raise self.exc
        self.handled += 1


async def handled_by_a_services_stage(handler: FailingFor) -> list[str]:
    """The dead-letter topics written while a stage wired as every service wires it handles one message."""
    producer = Producer()
    app = SimpleNamespace(conf=SimpleNamespace(id="image-worker"), in_flight=InFlight())
    stage = agent_stage(app, ROWS_SUBMITTED, producer, OUTAGES)
    row = RowSubmitted(request_id=uuid.uuid4(), row_index=0, serial=1, product_name="P", image_urls=["http://a/x.jpg"])
    await handle_each(OneMessage(Message(encode(row))), stage, handler)
    return producer.dead_letters


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, failures: 0.0)


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.ENOSPC, "No space left on device"), WriteError("Out of disk space", code=14031)],
    ids=repr,
)
async def test_a_full_disk_is_waited_out_and_dead_letters_nothing(exc):
    handler = FailingFor(exc, times=RetryPolicy.attempts * 4)
    assert await handled_by_a_services_stage(handler) == []
    assert handler.handled == 1


async def test_a_handlers_own_failure_is_still_dead_lettered_after_its_attempts():
    handler = FailingFor(ValueError("bad row"), times=RetryPolicy.attempts)
    assert await handled_by_a_services_stage(handler) == [f"{ROWS_SUBMITTED.name}.dlq"]
    assert handler.handled == 0
