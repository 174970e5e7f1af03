"""`imgpipe run` as a user runs it, a process manager, always with a request in flight: every way of
stopping it ends every process of the stack in time (found by pid: broker, database, services and the
image-worker's codec processes), and the request completes once the stack is started again; a broker or
database killed with SIGKILL is restarted, and the request in flight completes with exact counts.

One data directory and one set of ports serve every start, so that a start finds what the one before
stored, and a test leaves its stack running for the next. These tests own their processes, so they
always run on the embedded broker and database, whatever IMGPIPE_TEST_BACKEND says."""

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from pymongo import MongoClient

from imgpipe_ops.client import FINISHED, healthy, upload
from imgpipe_ops.dlq import Filters
from imgpipe_ops.dlq import read as read_dead_letters
from imgpipe_ops.processes import free_port, venv_command
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_schemas.topics import REQUESTS_COMPLETED, ROWS_PROCESSED, ROWS_SUBMITTED
from tests.waiting import wait_for

ROWS, PER_ROW = 8, 2
DRAIN_S = 3  # the services' drain under test; `make run` allows 20 s
BUSY_STOP_S = 30  # what docs/operations.md promises for a busy stack
IDLE_STOP_S = 10
pytestmark = [pytest.mark.e2e, pytest.mark.long_running]


@dataclass(frozen=True)
class Proc:
    pid: int
    started: int  # clock ticks after boot: tells a pid from a later process given the same pid
    command: str

    def running(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[2] == self.started and stat[1] != "Z"


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> set[Proc]:
    """``root`` and every process below it, whatever session or group it is in."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        stat = _stat(pid)
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat and stat[1] != "Z":
            found.add(Proc(pid, stat[2], command))
        todo.extend(children.get(pid, []))
    return found


def named(processes: set[Proc], part: str) -> list[Proc]:
    return [p for p in processes if part in p.command]


class Runner:
    """Starts `imgpipe run` as a separate session, as a terminal or a service manager would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "IMGPIPE_PORT": str(self.api_port),
            "IMGPIPE_LOCAL_KAFKA_PORT": str(free_port()),
            "IMGPIPE_LOCAL_MONGO_PORT": str(free_port()),
            "IMGPIPE_DATA_DIR": str(data_dir),
            "IMGPIPE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"local stack test secret").decode(),
            "IMGPIPE_KAFKA_DRAIN_TIMEOUT_S": str(DRAIN_S),
            "IMGPIPE_RECONCILE_INTERVAL_S": "1",
            "IMGPIPE_RECONCILE_STALL_S": "4",
            "IMGPIPE_RECONCILE_MAX_ROUNDS": "30",
            "IMGPIPE_WORKER_CONCURRENCY": "2",
            "IMGPIPE_COMPRESS_PROCESSES": "2",
            "IMGPIPE_ACCEPT_CHUNK_ROWS": "100",
            "IMGPIPE_ACCEPT_LEASE_S": "3",
            "IMGPIPE_ACCEPT_RESUME_EVERY_S": "1",
        }
        self.popen: subprocess.Popen | None = None
        self.runs = 0
        self.seen: set[Proc] = set()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log(self) -> Path:
        return self.data_dir / f"run-{self.runs}.log"

    def command(self, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([venv_command("imgpipe"), "run"], env=self.env, start_new_session=True, **kwargs)

    def running(self) -> "Runner":
        """The stack, started if none runs."""
        if self.popen is None or self.popen.poll() is not None:
            self.runs += 1
            with open(self.log, "wb") as out:
                self.popen = self.command(stdout=out, stderr=subprocess.STDOUT)
            wait_for(lambda: self.popen.poll() is not None or healthy(self.api), 120, "imgpipe run answered")
            assert self.popen.poll() is None, self.log.read_text()
        return self

    def processes(self) -> set[Proc]:
        found = descendants(self.popen.pid)
        self.seen |= found
        return found

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.popen.pid, sig)

    def wait_gone(self, processes: set[Proc], timeout: float) -> float:
        started = time.monotonic()
        try:
            wait_for(lambda: not [p for p in processes if p.running()], timeout, "every process gone", 0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still running: {[p for p in processes if p.running()]}") from None
        self.popen.wait(5)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    runner = Runner(tmp_path_factory.mktemp("local-stack"))
    yield runner
    if runner.popen and runner.popen.poll() is None:
        runner.processes()
        runner.send(signal.SIGTERM)
        try:
            runner.popen.wait(BUSY_STOP_S)
        except subprocess.TimeoutExpired:
            runner.popen.kill()
    left = [p for p in runner.seen if p.running()]
    for p in left:
        os.kill(p.pid, signal.SIGKILL)
    assert not left, f"left running: {left}"


@pytest.fixture(scope="module")
def sources():
    photos = [photo_like_jpeg(500, 400, seed=i) for i in range(4)]
    routes = {f"/p/{i}.jpg": Route(photos[i % 4], delay_s=0.4) for i in range(ROWS * PER_ROW)}
    routes["/quick.jpg"] = Route(photos[0])
    with LocalHttpServer(routes=routes) as server:
        yield server


def status(runner: Runner, request_id: str) -> dict | None:
    """The status payload, or None while the API cannot answer."""
    try:
        response = httpx.get(f"{runner.api}/api/output/", params={"request_id": request_id}, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json()["payload"] if response.status_code == 200 else None


def request_in_flight(runner: Runner, sources) -> tuple[str, str]:
    rows = [
        (r + 1, f"P{r + 1}", [f"{sources.url}/p/{r * PER_ROW + j}.jpg" for j in range(PER_ROW)]) for r in range(ROWS)
    ]
    hook = f"/hook-{uuid.uuid4().hex}"
    request_id = upload(runner.api, products_csv(rows), webhook_url=f"{sources.url}{hook}")
    wait_for(lambda: (s := status(runner, request_id)) and 0 < s["progress"]["rows_done"] < ROWS, 60, "rows in flight")
    return request_id, hook


def assert_completes(runner: Runner, sources, request_id: str, hook: str) -> None:
    final = wait_for(
        lambda: (s := status(runner, request_id)) and s["status"] in FINISHED and s, 150, "the request done"
    )
    assert final["status"] == "SUCCESS"
    assert final["progress"] == {
        "rows_total": ROWS,
        "rows_done": ROWS,
        "images_total": ROWS * PER_ROW,
        "images_ok": ROWS * PER_ROW,
        "images_failed": 0,
    }
    output = httpx.get(final["output_file_url"], timeout=10).text
    assert output.count(f"/api/files/{request_id}/images/") == ROWS * PER_ROW
    wait_for(lambda: [r for r in sources.received if r.path == hook], 60, "the webhook")
    # Whatever was killed was an outage: no message of the request was dead-lettered on its account.
    bootstrap = f"127.0.0.1:{runner.env['IMGPIPE_LOCAL_KAFKA_PORT']}"
    assert list(read_dead_letters(bootstrap, Filters(request_id=request_id))) == []


def hold_an_upload_open(runner: Runner) -> socket.socket:
    """An upload whose body never ends: ingest waits for it when asked to stop, and has to be killed."""
    conn = socket.create_connection(("127.0.0.1", runner.api_port))
    conn.sendall(
        b"POST /api/upload/ HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b'Content-Length: 10000000\r\n\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        b"S. No.,Product Name,Input Image Urls\n"
    )
    return conn


def assert_every_part_runs(processes: set[Proc]) -> None:
    for part in ("tansu", "secantusd-py", "bin/ingest", "bin/image-worker", "bin/assembler", "bin/notifier"):
        assert len(named(processes, part)) == 1, (part, processes)
    assert named(processes, "multiprocessing.forkserver"), "the codec processes have not started"


STOPS = {
    "SIGINT (Ctrl-C)": ([signal.SIGINT], BUSY_STOP_S, 0),
    "SIGTERM, an upload held open": ([signal.SIGTERM], BUSY_STOP_S, 0),
    "SIGTERM twice": ([signal.SIGTERM, signal.SIGTERM], IDLE_STOP_S, 0),
    "SIGHUP": ([signal.SIGHUP], BUSY_STOP_S, 0),
    "SIGKILL of the supervisor": ([signal.SIGKILL], IDLE_STOP_S, -signal.SIGKILL),
}


@pytest.mark.parametrize("stop", STOPS, ids=list(STOPS))
def test_a_stop_ends_every_process_in_time_and_the_request_completes_after_the_next_start(runner, sources, stop):
    signals, budget_s, exit_code = STOPS[stop]
    runner.running()
    request_id, hook = request_in_flight(runner, sources)
    held = hold_an_upload_open(runner) if "held" in stop else None
    processes = runner.processes()
    assert_every_part_runs(processes)

    runner.send(signals[0])
    for sig in signals[1:]:
        wait_for(lambda: b"stopping every process" in runner.log.read_bytes(), 10, "the stop begun")
        runner.send(sig)
    elapsed = runner.wait_gone(processes, budget_s)
    print(f"{stop}: every process gone {elapsed:.1f} s after the signal")
    assert runner.popen.returncode == exit_code
    if held:
        assert b"ingest (pid" in runner.log.read_bytes() and b"did not stop in time: killed" in runner.log.read_bytes()
        held.close()

    runner.running()
    assert_completes(runner, sources, request_id, hook)


@pytest.mark.parametrize("victim", ["tansu", "secantusd-py"], ids=["broker", "database"])
def test_a_broker_or_database_killed_is_restarted_and_the_request_in_flight_completes(runner, sources, victim):
    runner.running()
    if victim == "tansu":
        # The consumers read well into the log first, past where the new log's messages will be.
        done = upload(runner.api, products_csv([(r, f"W{r}", [f"{sources.url}/quick.jpg"]) for r in range(1, 41)]))
        wait_for(lambda: (s := status(runner, done)) and s["status"] in FINISHED, 60, "the first request done")
    request_id, hook = request_in_flight(runner, sources)
    [killed] = named(runner.processes(), victim)
    os.kill(killed.pid, signal.SIGKILL)

    wait_for(lambda: [p for p in named(runner.processes(), victim) if p != killed], 30, f"{victim} restarted")
    assert b"was killed by SIGKILL" in runner.log.read_bytes()
    assert_completes(runner, sources, request_id, hook)
    assert runner.popen.poll() is None
    # What was lost is re-driven once, not again and again; and no consumer group refers to a log the
    # broker no longer has (which would skip what the new log holds below those offsets).
    assert reconcile_rounds(runner, request_id) <= 2
    assert offsets_beyond_the_log(runner) == []


def reconcile_rounds(runner: Runner, request_id: str) -> int:
    client = MongoClient(
        f"mongodb://127.0.0.1:{runner.env['IMGPIPE_LOCAL_MONGO_PORT']}", serverSelectionTimeoutMS=10_000
    )
    try:
        return client["imgpipe"]["requests"].find_one({"_id": request_id}).get("reconcile_rounds", 0)
    finally:
        client.close()


def offsets_beyond_the_log(runner: Runner) -> list[tuple[str, str, int, int, int]]:
    """(group, topic, partition, committed, log end) wherever a group's committed offset is past the log's end."""
    bootstrap = f"127.0.0.1:{runner.env['IMGPIPE_LOCAL_KAFKA_PORT']}"
    beyond = []
    for group, topic in [
        ("image-worker", ROWS_SUBMITTED),
        ("assembler", ROWS_PROCESSED),
        ("notifier", REQUESTS_COMPLETED),
    ]:
        ends = log_ends(bootstrap, topic.name)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            partitions = [TopicPartition(topic.name, p) for p in ends]
            for tp in consumer.committed(partitions, timeout=10):
                if tp.offset > ends[tp.partition]:
                    beyond.append((group, topic.name, tp.partition, tp.offset, ends[tp.partition]))
        finally:
            consumer.close()
    return beyond


def log_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """The offset after the last message of each partition. The embedded broker reports one less as its
    high watermark, so the message at the reported mark, if there is one, is looked for."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "log-ends",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
        }
    )
    try:
        # Each topic has the partitions of its role (rows or requests): asked, not assumed.
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, ends[p]) for p in partitions])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None and message.offset() >= ends[message.partition()]:
                ends[message.partition()] = message.offset() + 1
        return ends
    finally:
        consumer.close()


def test_an_idle_stack_stops_within_10_s_and_a_second_run_is_refused_while_it_runs(runner):
    runner.running()
    second = runner.command(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 1
    assert b"already in use: is imgpipe already running?" in out

    processes = runner.processes()
    runner.send(signal.SIGINT)
    elapsed = runner.wait_gone(processes, IDLE_STOP_S)
    print(f"idle stack: every process gone {elapsed:.1f} s after Ctrl-C")
    assert runner.popen.returncode == 0


def test_ingest_killed_mid_acceptance_is_resumed_and_every_row_counts_once(runner, sources):
    """kill -9 of ingest while an upload's rows are being accepted: the restarted ingest resumes the
    acceptance from the stored file once its lease ran out, and every row counts exactly once."""
    runner.running()
    rows = 3000
    data = products_csv([(r + 1, f"A{r + 1}", [f"{sources.url}/quick.jpg"]) for r in range(rows)])
    request_id = upload(runner.api, data)
    wait_for(
        lambda: (s := status(runner, request_id)) and 0 < s["rows_accepted"] < rows, 30, "rows accepted in part", 0.01
    )
    [ingest] = [p for p in named(runner.processes(), "bin/ingest")]
    os.kill(ingest.pid, signal.SIGKILL)
    wait_for(lambda: [p for p in named(runner.processes(), "bin/ingest") if p != ingest], 30, "ingest restarted")
    final = wait_for(
        lambda: (s := status(runner, request_id)) and s["status"] in FINISHED and s, 240, "the request done"
    )
    assert (final["status"], final["rows_accepted"]) == ("SUCCESS", rows)
    assert final["progress"] == {
        "rows_total": rows,
        "rows_done": rows,
        "images_total": rows,
        "images_ok": rows,
        "images_failed": 0,
    }
    output = httpx.get(final["output_file_url"], timeout=10).text
    assert output.count(f"/api/files/{request_id}/images/") == rows
