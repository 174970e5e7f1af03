"""What the local stack does when one of its processes exits: start it again, as compose's
``restart: on-failure`` would, after a backoff that doubles while it keeps exiting soon after its start.
A process that keeps exiting (a crash loop) is reported at ERROR with the last lines of its log, and a
restarted broker or database that does not answer by its deadline is reported so, killed and started again.

The embedded broker keeps its log, and its consumer groups' offsets, in memory. When it dies, the services
that consume from it die with it and start afresh once it answers again (see Restarts._hold_consumers);
the assembler's reconciler publishes again what the broker forgot.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from imgpipe_ops.processes import Process, broker_answers, database_answers, describe_exit
from imgpipe_ops.roster import CONSUMERS, service_of

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# A process that ran this long before exiting is restarted after the first backoff again.
STABLE_AFTER_S = 60.0
# A broker restarted that does not answer by then is hung: it is killed, and started again. (It keeps
# nothing on disk, so it answers within a second. The database replays its journal before it listens,
# which takes as long as the journal is: its deadline is a setting, Restarts' database_ready_s.)
READY_WITHIN_S = 60.0
DATABASE_READY_WITHIN_S = 120.0
# This many exits within the window is a crash loop, reported at ERROR with the process's last log lines.
CRASH_LOOP_EXITS = 5
CRASH_LOOP_WINDOW_S = 300.0
LAST_LINES = 20


@dataclass
class _Restart:
    failures: int = 0
    due: float | None = None
    awaiting_ready: bool = False
    held_for_broker: bool = False  # stopped with the broker, started again once it answers
    exits: deque[float] = field(default_factory=deque)  # when it exited, within the crash-loop window


class Supervised(Protocol):
    """What Restarts asks of the stack it keeps running (imgpipe_ops.stack.LocalStack)."""

    broker: Process | None
    database: Process | None
    services: list[Process]

    @property
    def mongo_url(self) -> str: ...

    @property
    def bootstrap(self) -> str: ...

    def processes(self) -> list[Process]: ...

    def create_topics(self) -> None: ...


class Restarts:
    """The restart state of every process of ``stack``; ``check`` is called by its supervising loop."""

    def __init__(self, stack: Supervised, database_ready_s: float = DATABASE_READY_WITHIN_S) -> None:
        self._stack = stack
        self._database_ready_s = database_ready_s
        self._state: dict[str, _Restart] = {}

    def _of(self, process: Process) -> _Restart:
        return self._state.setdefault(process.name, _Restart())

    def check(self) -> None:
        for process in self._stack.processes():
            self._check(process, self._of(process))

    def _check(self, process: Process, restart: _Restart) -> None:
        if process.alive():
            if restart.awaiting_ready and self._ready_again(process):
                restart.awaiting_ready = False
                if process is self._stack.broker:
                    self._release_consumers()
            elif restart.awaiting_ready and time.monotonic() - process.started_at > self._ready_within(process):
                log.error(
                    "%s (pid %s) does not answer %.0f s after its start: killed, to be started again%s",
                    process.name,
                    process.pid,
                    self._ready_within(process),
                    _last_lines(process),
                )
                process.kill()
            return
        if restart.held_for_broker:
            return
        now = time.monotonic()
        if restart.due is None and process is self._stack.broker:
            self._hold_consumers()
        if restart.due is None:
            ran_s = now - process.started_at
            stable = ran_s >= STABLE_AFTER_S and not restart.awaiting_ready
            restart.failures = 0 if stable else restart.failures + 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, restart.failures - 1))
            restart.due = now + delay
            log.warning(
                "%s (pid %s) %s after %.0f s; restarting in %.1f s",
                process.name,
                process.pid,
                describe_exit(process.returncode),
                ran_s,
                delay,
            )
            self._note_exit(process, restart, now)
        elif now >= restart.due and self._start(process, restart):
            restart.awaiting_ready = process in (self._stack.broker, self._stack.database)
            log.info("%s restarted (pid %s)", process.name, process.pid)

    def _ready_within(self, process: Process) -> float:
        return self._database_ready_s if process is self._stack.database else READY_WITHIN_S

    @staticmethod
    def _note_exit(process: Process, restart: _Restart, now: float) -> None:
        """A crash loop is said loudly, with what the process said last: a warning per restart is easy to miss."""
        restart.exits.append(now)
        while restart.exits[0] < now - CRASH_LOOP_WINDOW_S:
            restart.exits.popleft()
        if len(restart.exits) >= CRASH_LOOP_EXITS:
            log.error(
                "%s is crash-looping: it exited %d times in the last %.0f s%s",
                process.name,
                len(restart.exits),
                CRASH_LOOP_WINDOW_S,
                _last_lines(process),
            )

    @staticmethod
    def _start(process: Process, restart: _Restart) -> bool:
        """Starts ``process``; one that cannot be started is tried again after the longest backoff."""
        try:
            process.start()
        except OSError as exc:
            restart.due = time.monotonic() + BACKOFF_MAX_S
            log.error("%s could not be started (%s); trying again in %.0f s", process.name, exc, BACKOFF_MAX_S)
            return False
        restart.due = None
        return True

    def _consumers(self) -> list[Process]:
        return [p for p in self._stack.services if service_of(p.name) in CONSUMERS]

    def _hold_consumers(self) -> None:
        """A consumer that lived on past the broker would keep the offsets of the old log: it would commit
        them to the new one, and skip every message the new log holds below them (faust drops a message
        below the offset it has read to). So the consumers are stopped with the broker, at once: what they
        hold in flight is lost with the log anyway, and re-driven by the reconciler."""
        held = self._consumers()
        for process in held:
            process.kill()
            self._of(process).held_for_broker = True
        log.warning("the broker's log is lost: %s stopped until it answers again", ", ".join(p.name for p in held))

    def _release_consumers(self) -> None:
        """Each held consumer starts now; one that cannot is left to the usual restart, after a backoff."""
        for process in self._consumers():
            restart = self._of(process)
            was_held, restart.held_for_broker, restart.due = restart.held_for_broker, False, None
            if was_held and not process.alive() and self._start(process, restart):
                log.info("%s started again (pid %s)", process.name, process.pid)

    def _ready_again(self, process: Process) -> bool:
        stack = self._stack
        if process is stack.database:
            if not database_answers(stack.mongo_url):
                return False
            log.info("the database answers again")
            return True
        if not broker_answers(stack.bootstrap):
            return False
        try:
            stack.create_topics()  # the broker kept nothing: the services' topics must exist again
        except Exception as exc:  # noqa: BLE001 - tried again on the next round
            log.warning("the broker answers but its topics could not be created yet: %s", exc)
            return False
        log.info("the broker answers again; topics created")
        return True


def _last_lines(process: Process) -> str:
    lines = process.last_lines(LAST_LINES)
    return "; the last lines of its log:\n  " + "\n  ".join(lines) if lines else "; its output is above"
