"""The local stack's restarts, over fake processes and a fake clock: a broker that dies takes the consumers
with it until it answers again, and nothing is left held when a start fails or the broker never answers; a
database that does not answer by its deadline is restarted, and a crash loop is reported with the last log lines."""

import logging

import pytest

from imgpipe_ops import supervision
from imgpipe_ops.supervision import BACKOFF_FIRST_S, CRASH_LOOP_EXITS, CRASH_LOOP_WINDOW_S, READY_WITHIN_S, Restarts

DATABASE_READY_S = 90.0


class Clock:
    now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeProcess:
    def __init__(self, name: str, clock: Clock, fail_starts: int = 0) -> None:
        self.name, self.clock, self.fail_starts = name, clock, fail_starts
        self.running, self.starts, self.pid, self.returncode = True, 0, 1, None
        self.started_at = clock.now

    def alive(self) -> bool:
        return self.running

    def start(self) -> "FakeProcess":
        if self.fail_starts:
            self.fail_starts -= 1
            raise OSError("no more processes")
        self.running, self.starts, self.started_at = True, self.starts + 1, self.clock.now
        return self

    def kill(self) -> None:
        self.running, self.returncode = False, -9

    def last_lines(self, count: int) -> list[str]:
        return [f"{self.name}: start {self.starts}: WT_PANIC: the process must exit and restart"][-count:]


class FakeStack:
    mongo_url, bootstrap = "mongodb://db", "broker:9092"

    def __init__(self, clock: Clock) -> None:
        self.broker, self.database = FakeProcess("broker", clock), FakeProcess("database", clock)
        self.services = [
            FakeProcess(name, clock) for name in ("ingest", "image-worker-1", "image-worker-2", "assembler", "notifier")
        ]
        self.topics_created = 0

    def processes(self):
        return [self.database, self.broker, *self.services]

    def create_topics(self) -> None:
        self.topics_created += 1


@pytest.fixture
def world(monkeypatch):
    clock = Clock()
    answers = {"broker": True}
    monkeypatch.setattr(supervision.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(supervision, "broker_answers", lambda bootstrap: answers["broker"])
    monkeypatch.setattr(supervision, "database_answers", lambda url: answers.get("database", True))
    stack = FakeStack(clock)
    return stack, Restarts(stack, database_ready_s=DATABASE_READY_S), clock, answers


def consumers(stack):
    return [p for p in stack.services if p.name != "ingest"]


def killed_and_restarted(restarts: Restarts, clock: Clock, process: FakeProcess) -> None:
    """``process`` dies, is noticed, and is started again after the first backoff."""
    process.kill()
    restarts.check()
    clock.now += BACKOFF_FIRST_S
    restarts.check()


def test_the_consumers_die_with_the_broker_and_start_once_it_answers_again(world):
    stack, restarts, clock, answers = world
    stack.broker.kill()
    answers["broker"] = False
    restarts.check()
    assert [p.running for p in consumers(stack)] == [False] * 4
    assert stack.services[0].running  # ingest only produces: it keeps running

    clock.now += BACKOFF_FIRST_S
    restarts.check()  # the broker starts, but does not answer yet
    assert stack.broker.running and not any(p.running for p in consumers(stack))
    clock.now += 5
    restarts.check()
    assert not any(p.running for p in consumers(stack))  # held, not restarted on their own backoff

    answers["broker"] = True
    restarts.check()
    assert all(p.running for p in consumers(stack)) and stack.topics_created == 1
    assert [p.starts for p in consumers(stack)] == [1] * 4


def test_a_consumer_that_cannot_start_with_the_broker_is_started_later(world):
    stack, restarts, clock, _ = world
    assembler = next(p for p in stack.services if p.name == "assembler")
    assembler.fail_starts = 1
    killed_and_restarted(restarts, clock, stack.broker)
    restarts.check()  # it answers: the consumers start, but for the assembler
    assert not assembler.running and all(p.running for p in consumers(stack) if p is not assembler)
    clock.now += supervision.BACKOFF_MAX_S
    restarts.check()
    assert assembler.running


def test_a_broker_that_never_answers_is_killed_and_started_again(world):
    stack, restarts, clock, answers = world
    answers["broker"] = False
    killed_and_restarted(restarts, clock, stack.broker)
    assert stack.broker.starts == 1
    clock.now += READY_WITHIN_S + 1
    restarts.check()
    assert not stack.broker.running
    clock.now += supervision.BACKOFF_MAX_S
    restarts.check()  # noticed
    clock.now += supervision.BACKOFF_MAX_S
    restarts.check()
    assert stack.broker.starts == 2 and not any(p.running for p in consumers(stack))
    answers["broker"] = True
    restarts.check()
    assert all(p.running for p in consumers(stack))


def test_a_database_slow_to_come_back_is_waited_for_until_its_deadline_then_restarted_loudly(world, caplog):
    """It replays its journal before it listens: it has until its deadline, then it is taken for failed."""
    stack, restarts, clock, answers = world
    answers["database"] = False
    killed_and_restarted(restarts, clock, stack.database)
    clock.now += DATABASE_READY_S - 1
    restarts.check()
    assert stack.database.running and stack.database.starts == 1

    clock.now += 2
    with caplog.at_level(logging.ERROR, logger=supervision.__name__):
        restarts.check()
    assert not stack.database.running
    [report] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "database" in report.getMessage() and "does not answer 90 s after its start" in report.getMessage()
    assert "database: start 1: WT_PANIC" in report.getMessage()

    restarts.check()  # noticed: restarted after a backoff
    clock.now += supervision.BACKOFF_MAX_S
    restarts.check()
    assert stack.database.running and stack.database.starts == 2
    answers["database"] = True
    restarts.check()
    clock.now += 10 * DATABASE_READY_S
    restarts.check()
    assert stack.database.running and stack.database.starts == 2  # it answered: no deadline any more


def crash_loop_reports(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "crash-looping" in r.getMessage()]


def test_a_crash_loop_is_reported_at_error_with_the_last_log_lines(world, caplog):
    stack, restarts, clock, _ = world
    caplog.set_level(logging.WARNING, logger=supervision.__name__)
    for _ in range(CRASH_LOOP_EXITS - 1):
        stack.database.kill()
        restarts.check()
        clock.now += supervision.BACKOFF_MAX_S
        restarts.check()
    assert stack.database.starts == CRASH_LOOP_EXITS - 1 and crash_loop_reports(caplog) == []

    stack.database.kill()
    restarts.check()
    [report] = crash_loop_reports(caplog)
    assert report.startswith(f"database is crash-looping: it exited {CRASH_LOOP_EXITS} times in the last 300 s")
    assert f"database: start {CRASH_LOOP_EXITS - 1}: WT_PANIC" in report


def test_exits_spread_wider_than_the_window_are_no_crash_loop(world, caplog):
    stack, restarts, clock, _ = world
    caplog.set_level(logging.WARNING, logger=supervision.__name__)
    notifier = stack.services[-1]
    for _ in range(2 * CRASH_LOOP_EXITS):
        notifier.kill()
        restarts.check()
        clock.now += CRASH_LOOP_WINDOW_S / (CRASH_LOOP_EXITS - 1) + 1
        restarts.check()
    assert notifier.starts == 2 * CRASH_LOOP_EXITS and crash_loop_reports(caplog) == []
