"""The whole system as local processes: embedded broker and database, topics, the four services, supervised.

A process that exits is started again after a backoff, the broker and the database like the services
(see supervision). A stop ends every child within
``drain_timeout_s + 2 × STOP_MARGIN_S``: the services drain in parallel, then the broker and database stop.
"""

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgpipe_bus import BusSettings, ensure_topics
from imgpipe_ops.client import healthy
from imgpipe_ops.process_logs import LogLimits
from imgpipe_ops.processes import (
    GroupReaper,
    Process,
    broker_process,
    database_process,
    free_port,
    venv_command,
    wait_for_broker,
    wait_for_database,
)
from imgpipe_ops.roster import SERVICES, service_of
from imgpipe_ops.supervision import Restarts
from imgpipe_runtime.webhooks import generate_secret

log = logging.getLogger(__name__)

LOCAL_FETCH_ALLOW = "127.0.0.0/8,::1/128"
# After a service's drain: faust's own shutdown, or the broker's and the database's after SIGTERM.
STOP_MARGIN_S = 4.0
# The broker and database when a second signal hurries the stop: a moment to close their files.
HURRIED_GRACE_S = 2.0


@dataclass
class StackConfig:
    api_port: int = 8000
    kafka_port: int = 19092
    mongo_port: int = 27018
    storage: str = ":memory:"
    log_dir: Path | None = None
    services_log_to_files: bool = True
    image_workers: int = 1
    # Processes of each service (image-worker: image_workers unless given here); several ingests share the API's port.
    replicas: dict[str, int] = field(default_factory=dict)
    partitions: int = 4
    env: dict[str, str] = field(default_factory=dict)
    external_kafka: str | None = None
    external_mongo: str | None = None
    # Output images and CSVs; None: a temporary directory that lives as long as the stack.
    blob_dir: Path | None = None
    # How long a service may finish its work in flight once asked to stop (its IMGPIPE_KAFKA_DRAIN_TIMEOUT_S).
    drain_timeout_s: float = 20.0
    # Each process's log file in log_dir is rotated at this size, with this many older files kept.
    log_limits: LogLimits = field(default_factory=LogLimits)
    # How long the embedded database may take to answer after a start before it is taken for failed.
    database_ready_s: float = 120.0


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker: Process | None = None
        self.database: Process | None = None
        self.services: list[Process] = []
        self.reaper: GroupReaper | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = False
        self._stop_requests = 0
        self._restarts = Restarts(self, database_ready_s=config.database_ready_s)
        self.metrics_ports: dict[str, int] = {}
        self._blob_tmp: tempfile.TemporaryDirectory[str] | None = None
        if config.blob_dir is not None:
            self.blob_dir = config.blob_dir
        else:
            self._blob_tmp = tempfile.TemporaryDirectory(prefix="imgpipe-blobs-")
            self.blob_dir = Path(self._blob_tmp.name)
        # No secret is built in: a run without IMGPIPE_WEBHOOK_SECRET signs with one of its own.
        self.webhook_secret = os.environ.get("IMGPIPE_WEBHOOK_SECRET") or generate_secret()

    @property
    def bootstrap(self) -> str:
        return self.config.external_kafka or f"127.0.0.1:{self.config.kafka_port}"

    @property
    def mongo_url(self) -> str:
        # journal=true: every write is acknowledged once the embedded database's log is on disk. Without
        # it, a write it acknowledged less than a second before a kill -9 is lost (measured: the request
        # document of an upload answered 0.9 s earlier), and a request with it.
        return (
            self.config.external_mongo
            or f"mongodb://127.0.0.1:{self.config.mongo_port}/?retryWrites=false&journal=true"
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    @property
    def service_env(self) -> dict[str, str]:
        return {
            "IMGPIPE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "IMGPIPE_KAFKA_PARTITIONS": str(self.config.partitions),
            "IMGPIPE_KAFKA_DRAIN_TIMEOUT_S": str(self.config.drain_timeout_s),
            "IMGPIPE_MONGO_URL": self.mongo_url,
            "IMGPIPE_HOST": "127.0.0.1",
            "IMGPIPE_PORT": str(self.config.api_port),
            # Locally, image sources and webhooks on this machine are the common case; a value set in
            # the environment replaces this default.
            "IMGPIPE_FETCH_ALLOW": os.environ.get("IMGPIPE_FETCH_ALLOW", LOCAL_FETCH_ALLOW),
            # Files in a directory on this machine: the embedded database is pure Python, and image
            # bytes through it would cost it ~11 ms of CPU each.
            "IMGPIPE_BLOB_STORE": "directory",
            "IMGPIPE_BLOB_DIR": str(self.blob_dir),
            "IMGPIPE_WEBHOOK_SECRET": self.webhook_secret,
            **self.config.env,
        }

    @property
    def stop_requests(self) -> int:
        return self._stop_requests

    @property
    def stop_requested(self) -> bool:
        return self._stop_requests > 0

    def request_stop(self) -> None:
        """For signal handlers: the first call asks for a stop, every later one hurries it. It only counts,
        because a handler that took a lock could wait forever on the code it interrupted."""
        self._stop_requests += 1

    def _log(self, name: str) -> Path | None:
        if self.config.log_dir is None:
            return None
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        return self.config.log_dir / f"{name}.log"

    def start_database(self) -> None:
        if self.config.storage != ":memory:":
            Path(self.config.storage).mkdir(parents=True, exist_ok=True)
        self.database = database_process(
            self.config.mongo_port, self.config.storage, self._log("database"), self.reaper, self.config.log_limits
        )
        self.database.start()
        wait_for_database(
            self.database, self.mongo_url, timeout=self.config.database_ready_s, cancelled=lambda: self.stop_requested
        )

    def start_broker(self) -> None:
        self.broker = broker_process(self.config.kafka_port, self._log("broker"), self.reaper, self.config.log_limits)
        self.broker.start()
        wait_for_broker(self.broker, self.bootstrap, cancelled=lambda: self.stop_requested)

    def create_topics(self) -> None:
        ensure_topics(BusSettings(bootstrap_servers=self.bootstrap, partitions=self.config.partitions))

    def start_services(self) -> None:
        for name in (service.name for service in SERVICES):
            copies = self.replicas(name)
            for copy in range(copies):
                label = name if copies == 1 else f"{name}-{copy + 1}"
                log_file = self._log(label) if self.config.services_log_to_files else None
                env = self.process_env(name, label)
                if name == "ingest" and copies > 1:
                    env["IMGPIPE_REUSE_PORT"] = "true"
                process = Process(
                    label,
                    [venv_command(name)],
                    env=env,
                    log=log_file,
                    reaper=self.reaper,
                    log_limits=self.config.log_limits,
                )
                self.services.append(process.start())
        log.info("/metrics: %s", ", ".join(f"{p.name} {self.metrics_url(p.name)}/metrics" for p in self.services))
        for ingest in self.copies("ingest"):
            ingest.wait_until(self.healthy, 60, "ingest answered /healthz", lambda: self.stop_requested)

    def start(self) -> "LocalStack":
        """Starts what is not given as external, creates the topics, then the services. A stop asked for
        meanwhile (``request_stop``) ends the start with StartCancelled, every process stopped."""
        try:
            self.reaper = GroupReaper()
            if not self.config.external_mongo:
                self.start_database()
            if not self.config.external_kafka:
                self.start_broker()
            self.create_topics()
            self.start_services()
        except BaseException:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        return healthy(self.api_url)

    def process_env(self, name: str, label: str) -> dict[str, str]:
        """service_env, and a free port of its own for /metrics (and a faust service's /healthz),
        IMGPIPE_METRICS_PORT: several image-workers run on one machine."""
        self.metrics_ports[label] = free_port()
        return {**self.service_env, "IMGPIPE_METRICS_PORT": str(self.metrics_ports[label])}

    def metrics_url(self, label: str) -> str:
        """Where the process ``label`` serves /metrics (and, but for ingest, whose is the API's, /healthz)."""
        return f"http://127.0.0.1:{self.metrics_ports[label]}"

    def replicas(self, name: str) -> int:
        default = self.config.image_workers if name == "image-worker" else 1
        return self.config.replicas.get(name, default)

    def copies(self, name: str) -> list[Process]:
        """The processes of service ``name``: ``name`` itself, or ``name-1``, ``name-2``… when it has several."""
        return [process for process in self.services if service_of(process.name) == name]

    def service(self, label: str) -> Process:
        return next(process for process in self.services if process.name == label)

    def processes(self) -> list[Process]:
        return [p for p in (self.database, self.broker) if p] + self.services

    def supervise_once(self) -> None:
        """Like compose's ``restart: on-failure``, for every process (see supervision.Restarts)."""
        with self._lock:
            if not self._stopping:
                self._restarts.check()

    def supervise(self, poll_s: float = 0.2, stop: threading.Event | None = None) -> None:
        """Until ``request_stop`` (or ``stop`` is set): restarts what exits."""
        while not self.stop_requested and not (stop and stop.is_set()):
            self.supervise_once()
            if stop:
                stop.wait(poll_s)
            else:
                time.sleep(poll_s)  # a signal handler runs during the sleep

    def supervise_in_background(self, poll_s: float = 0.2) -> threading.Event:
        """Restarts what exits, from a thread, until the returned event is set or the stack stops."""
        stop = threading.Event()
        threading.Thread(target=self.supervise, args=(poll_s, stop), daemon=True, name="supervisor").start()
        return stop

    def stop(self) -> None:
        """The services are asked to stop all at once, so that they drain in parallel, and get
        ``drain_timeout_s`` plus a margin before their groups are killed; then the broker and database.
        A ``request_stop`` during the stop skips what is left of the waiting."""
        with self._lock:
            if self._stopped:
                return
            self._stopping = self._stopped = True
        started, requests = time.monotonic(), self._stop_requests
        hurried = lambda: self._stop_requests > requests  # noqa: E731
        self._end(self.services, self.config.drain_timeout_s + STOP_MARGIN_S, 0.0, hurried)
        self._end([p for p in (self.broker, self.database) if p], STOP_MARGIN_S, HURRIED_GRACE_S, hurried)
        if self.reaper is not None:
            self.reaper.close()
        if self._blob_tmp is not None:
            self._blob_tmp.cleanup()
        log.info("every process stopped in %.1f s", time.monotonic() - started)

    @staticmethod
    def _end(processes: list[Process], grace_s: float, hurried_grace_s: float, hurried) -> None:
        for process in processes:
            process.terminate()
        now = time.monotonic()
        deadline = now + grace_s
        while any(process.alive() for process in processes):
            now = time.monotonic()
            if hurried():
                deadline = min(deadline, now + hurried_grace_s)
            if now >= deadline:
                for process in processes:
                    if process.alive():
                        log.warning("%s (pid %s) did not stop in time: killed", process.name, process.pid)
                        process.kill()
                return
            time.sleep(0.05)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
