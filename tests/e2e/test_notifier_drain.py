"""A notifier stopped by SIGTERM while completions stream in, then started again: every completion is
delivered, none lost. What it had not handled when it stopped is delivered again after the restart."""

import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Producer
from pymongo import MongoClient

from imgpipe_bus import BusSettings, encode, ensure_topics
from imgpipe_ops.processes import Process, venv_command
from imgpipe_runtime.documents import DELIVERIES
from imgpipe_runtime.webhooks import generate_secret
from imgpipe_schemas import Progress, RequestCompleted
from imgpipe_schemas.topics import REQUESTS_COMPLETED
from tests.waiting import wait_for

COMPLETIONS = 200
pytestmark = pytest.mark.e2e


class SlowReceiver:
    """A webhook subscriber that takes ``delay_s`` to answer each POST, so that a stopping notifier has
    webhooks in flight; records each webhook id it was sent."""

    def __init__(self, delay_s: float) -> None:
        receiver = self
        self.ids: set[str] = set()
        self.posts = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay_s)
                with receiver._lock:
                    receiver.ids.add(self.headers["webhook-id"])
                    receiver.posts += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hook"

    def delivered(self) -> int:
        with self._lock:
            return len(self.ids)

    def __enter__(self) -> "SlowReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def completion(url: str) -> RequestCompleted:
    return RequestCompleted(
        request_id=uuid.uuid4(),
        status="SUCCESS",
        output_file_url="http://api.test/o.csv",
        progress=Progress(rows_total=1, rows_done=1, images_total=1, images_ok=1),
        webhook_url=url,
    )


def produce(bootstrap: str, events: list[RequestCompleted], per_s: float) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False})
    for event in events:
        producer.produce(REQUESTS_COMPLETED.name, key=event.partition_key().encode(), value=encode(event))
        producer.poll(0)
        time.sleep(1 / per_s)
    assert producer.flush(30) == 0, "completions not all produced"


@pytest.mark.timeout(300)
def test_sigterm_while_completions_stream_loses_no_webhook(infra, tmp_path):
    ensure_topics(BusSettings(bootstrap_servers=infra.bootstrap, partitions=4))
    database = f"drain_{uuid.uuid4().hex[:8]}"
    env = {
        "IMGPIPE_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
        "IMGPIPE_MONGO_URL": infra.mongo_url,
        "IMGPIPE_MONGO_DATABASE": database,
        "IMGPIPE_WEBHOOK_SECRET": generate_secret(),
        "IMGPIPE_FETCH_ALLOW": "127.0.0.0/8",
        "IMGPIPE_WEBHOOK_TIMEOUT_S": "5",
    }
    log = tmp_path / "notifier.log"
    with SlowReceiver(delay_s=0.3) as receiver, MongoClient(infra.mongo_url) as client:
        events = [completion(receiver.url) for _ in range(COMPLETIONS)]
        notifier = Process("notifier", [venv_command("notifier")], env=env, log=log).start()
        streaming = None
        try:
            produce(infra.bootstrap, events[:20], per_s=200)
            wait_for(lambda: receiver.delivered() >= 10, 90, "the notifier delivering")
            streaming = threading.Thread(target=produce, args=(infra.bootstrap, events[20:], 40), daemon=True)
            streaming.start()
            wait_for(lambda: receiver.delivered() >= 60, 60, "webhooks delivered while completions stream")
            notifier.popen.send_signal(signal.SIGTERM)
            assert notifier.popen.wait(60) == 0
            assert "drained in-flight work before stopping" in log.read_text()
            streaming.join(60)
            notifier = Process("notifier", [venv_command("notifier")], env=env, log=log).start()
            deliveries = client[database][DELIVERIES]
            wait_for(
                lambda: deliveries.count_documents({"state": "delivered"}) >= COMPLETIONS,
                120,
                f"{COMPLETIONS} deliveries recorded",
            )
        finally:
            notifier.stop()
            if streaming is not None:
                streaming.join(60)
            print(f"{receiver.delivered()} of {COMPLETIONS} webhooks received; the notifier's log ends:")
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        assert deliveries.count_documents({}) == COMPLETIONS
        assert receiver.ids == {str(event.event_id) for event in events}
