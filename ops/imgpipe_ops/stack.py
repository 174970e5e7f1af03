"""The whole system as local processes: embedded broker and database, topics, the four services."""

import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from imgpipe_bus import BusSettings, ensure_topics
from imgpipe_ops.client import healthy
from imgpipe_runtime.webhooks import generate_secret
from imgpipe_ops.processes import (
    Process,
    broker_process,
    database_process,
    venv_command,
    wait_for_broker,
    wait_for_database,
)

log = logging.getLogger(__name__)

LOCAL_FETCH_ALLOW = "127.0.0.0/8,::1/128"
SERVICES = ("ingest", "image-worker", "assembler", "notifier")


@dataclass
class StackConfig:
    api_port: int = 8000
    kafka_port: int = 19092
    mongo_port: int = 27018
    storage: str = ":memory:"
    log_dir: Path | None = None
    services_log_to_files: bool = True
    image_workers: int = 1
    partitions: int = 4
    env: dict[str, str] = field(default_factory=dict)
    external_kafka: str | None = None
    external_mongo: str | None = None
    # Output images and CSVs; None: a temporary directory that lives as long as the stack.
    blob_dir: Path | None = None


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker: Process | None = None
        self.database: Process | None = None
        self.services: list[Process] = []
        self._stopping = False
        self._blob_tmp = None if config.blob_dir else tempfile.TemporaryDirectory(prefix="imgpipe-blobs-")
        self.blob_dir = config.blob_dir or Path(self._blob_tmp.name)
        # No secret is built in: a run without IMGPIPE_WEBHOOK_SECRET signs with one of its own.
        self.webhook_secret = os.environ.get("IMGPIPE_WEBHOOK_SECRET") or generate_secret()

    @property
    def bootstrap(self) -> str:
        return self.config.external_kafka or f"127.0.0.1:{self.config.kafka_port}"

    @property
    def mongo_url(self) -> str:
        return self.config.external_mongo or f"mongodb://127.0.0.1:{self.config.mongo_port}/?retryWrites=false"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    @property
    def service_env(self) -> dict[str, str]:
        return {
            "IMGPIPE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "IMGPIPE_KAFKA_PARTITIONS": str(self.config.partitions),
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

    def _log(self, name: str) -> Path | None:
        if self.config.log_dir is None:
            return None
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        return self.config.log_dir / f"{name}.log"

    def start_database(self) -> None:
        if self.config.storage != ":memory:":
            Path(self.config.storage).mkdir(parents=True, exist_ok=True)
        self.database = database_process(self.config.mongo_port, self.config.storage, self._log("database")).start()
        wait_for_database(self.database, self.mongo_url)

    def start_broker(self) -> None:
        self.broker = broker_process(self.config.kafka_port, self._log("broker")).start()
        wait_for_broker(self.broker, self.bootstrap)

    def start_services(self) -> None:
        for name in SERVICES:
            copies = self.config.image_workers if name == "image-worker" else 1
            for copy in range(copies):
                label = name if copies == 1 else f"{name}-{copy + 1}"
                log_file = self._log(label) if self.config.services_log_to_files else None
                process = Process(label, [venv_command(name)], env=self.service_env, log=log_file)
                self.services.append(process.start())
        ingest = self.service("ingest")
        ingest.wait_until(self.healthy, 60, "ingest answered /healthz")

    def start(self) -> "LocalStack":
        """Starts what is not given as external, creates the topics, then the services."""
        try:
            if not self.config.external_mongo:
                self.start_database()
            if not self.config.external_kafka:
                self.start_broker()
            ensure_topics(BusSettings(bootstrap_servers=self.bootstrap, partitions=self.config.partitions))
            self.start_services()
        except BaseException:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        return healthy(self.api_url)

    def service(self, label: str) -> Process:
        return next(process for process in self.services if process.name == label)

    def restart_dead_services(self) -> list[str]:
        """Like compose's ``restart: on-failure``: starts again every service process that exited."""
        restarted = []
        for process in self.services if not self._stopping else []:
            if not process.alive():
                log.warning("%s (pid %s) exited with code %s; restarting", process.name, process.pid, process.popen.returncode)
                process.start()
                restarted.append(process.name)
        return restarted

    def supervise(self, poll_s: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            self.restart_dead_services()
            stop.wait(poll_s)

    def supervise_in_background(self, poll_s: float = 0.2) -> threading.Event:
        """Restarts dead services from a thread until the returned event is set."""
        stop = threading.Event()
        threading.Thread(target=self.supervise, args=(poll_s, stop), daemon=True, name="supervisor").start()
        return stop

    def stop(self) -> None:
        """Services first, all at once so that they drain in parallel; then the broker and database."""
        self._stopping = True
        for group in (self.services, [p for p in (self.broker, self.database) if p]):
            for process in group:
                process.terminate()
            for process in group:
                process.stop()
        if self._blob_tmp is not None:
            self._blob_tmp.cleanup()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
