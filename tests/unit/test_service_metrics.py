"""What each service counts, with in-memory adapters: the deltas of the process's Prometheus samples."""

import dataclasses
import uuid
from datetime import UTC, datetime

import aiohttp
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from imgpipe_bus import Consumed, DeadLetters, Failure
from imgpipe_bus.health import MetricsPort
from imgpipe_image_worker.handlers import handle_row
from imgpipe_ingest import metrics as ingest_metrics
from imgpipe_ingest.body_limit import BodyLimit
from imgpipe_notifier import handlers as notifier
from imgpipe_notifier.metrics import answer_class
from imgpipe_ops.processes import free_port
from tests.support.assembler_fakes import Assembler
from tests.support.image_worker_fakes import FakeSources, adapters, row

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Samples:
    """Deltas of REGISTRY's samples since this was made."""

    def __init__(self) -> None:
        self._before = self._all()

    @staticmethod
    def _all() -> dict:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in REGISTRY.collect()
            for sample in family.samples
        }

    def moved(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self._all().get(key, 0.0) - self._before.get(key, 0.0)


class Recorder:
    def __init__(self) -> None:
        self.published: list = []

    async def publish(self, topic, event) -> None:
        self.published.append((topic, event))

    async def publish_raw(self, topic, key, value, headers) -> None:
        self.published.append((topic, key))


async def test_the_image_worker_counts_each_reported_image_and_times_each_stage():
    fake = FakeSources(transient={"http://a/slow.jpg"})
    wired = dataclasses.replace(adapters(fake), producer=Recorder())
    samples = Samples()
    urls = ["http://a/x.jpg", "http://a/slow.jpg", "http://a/x.jpg"]
    copy = await handle_row(row(uuid.uuid4(), 0, urls), letter=None, adapters=wired)

    assert copy is not None  # the transient failure keeps the row for replay
    assert samples.moved("imgpipe_rows_processed_total") == 1
    assert samples.moved("imgpipe_images_total", outcome="ok", error_code="") == 2  # one source, two places
    assert samples.moved("imgpipe_images_total", outcome="failed", error_code="timeout") == 1
    source = len(b"source bytes of http://a/x.jpg")
    assert samples.moved("imgpipe_source_bytes_total") == source  # fetched once
    assert samples.moved("imgpipe_output_bytes_total") == source // 2
    assert samples.moved("imgpipe_fetch_seconds_count", outcome="ok") == 1
    assert samples.moved("imgpipe_fetch_seconds_count", outcome="failed") == 1
    assert samples.moved("imgpipe_compress_seconds_count", outcome="ok") == 1
    assert samples.moved("imgpipe_store_seconds_count") == 0  # the fake codec stored it itself


async def test_the_assembler_counts_a_request_and_its_rows_once_however_often_results_arrive():
    assembler = Assembler(rows=2)
    samples = Samples()
    await assembler.deliver(assembler.result(0), assembler.result(1, ok=False))
    await assembler.deliver(assembler.result(1, ok=False))  # redelivered
    await assembler.deliver(assembler.result(1))  # replayed, now better: the request is updated

    assert samples.moved("imgpipe_row_results_total") == 4
    assert samples.moved("imgpipe_requests_completed_total", status="SUCCESS") == 1
    assert samples.moved("imgpipe_requests_completed_total", status="FAILED") == 0
    assert samples.moved("imgpipe_rows_completed_total") == 2
    assert [event.event_type for event in assembler.events] == ["request.completed", "request.updated"]


def test_webhook_answers_are_labelled_by_class_not_by_their_text():
    assert [answer_class(outcome) for outcome in (200, 204, 301, 404, 410, 503, 42)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "5xx",
        "other",
    ]
    assert answer_class("timeout") == "timeout"
    assert answer_class("blocked_address: 10.0.0.1 is private") == "blocked_address"
    assert answer_class("dns_error: nowhere.invalid") == "dns_error"
    assert answer_class("ClientConnectorError: Cannot connect to host 127.0.0.1:9") == "connection_error"


class FakeDeliveries:
    async def record(self, *args) -> None:
        pass


class FakeSender:
    def __init__(self, *answers) -> None:
        self.answers = list(answers)

    async def post(self, url: str, webhook_id: str, body: bytes) -> int | str:
        return self.answers.pop(0)


async def test_the_notifier_counts_every_attempt_by_what_became_of_its_delivery():
    letter = Consumed("imgpipe.requests.completed", 0, 7, None, b"k", b"v", [])
    dead_letters = DeadLetters(Recorder(), group="notifier")
    wired = notifier.Adapters(
        deliveries=FakeDeliveries(),
        sender=FakeSender(503, 200, "timeout", 404),
        dead_letters=dead_letters,
        schedule=notifier.Schedule((1.0,), lease_s=30),
        default_url=None,
    )

    def delivery(attempts: int) -> dict:
        return {
            "_id": str(uuid.uuid4()),
            "request_id": "r",
            "url": "http://hook/",
            "body": b"{}",
            "attempts": [{"at": NOW}] * attempts,
            "letter": letter.to_document(),
        }

    samples = Samples()
    states = [await notifier.attempt(delivery(n), wired, now=NOW) for n in (0, 1, 0, 0)]

    assert states == ["retrying", "delivered", "retrying", "failed"]
    assert samples.moved("imgpipe_webhook_attempts_total", outcome="retrying", answer="5xx") == 1
    assert samples.moved("imgpipe_webhook_attempts_total", outcome="delivered", answer="2xx") == 1
    assert samples.moved("imgpipe_webhook_attempts_total", outcome="retrying", answer="timeout") == 1
    assert samples.moved("imgpipe_webhook_attempts_total", outcome="failed", answer="4xx") == 1
    assert samples.moved("imgpipe_webhook_seconds_count") == 4
    # The refused delivery dead-letters its completion, through the bus's one counter.
    assert samples.moved("imgpipe_dead_letters_total", topic="imgpipe.requests.completed", stage="notifier") == 1


async def test_every_dead_letter_is_counted_by_its_source_topic_and_stage_once_stored():
    letters = DeadLetters(Recorder(), group="g")
    samples = Samples()
    failure = Failure("image-worker", ValueError("bad"), 1, NOW, NOW)
    for offset in range(3):
        await letters.send(Consumed("imgpipe.rows.submitted", 0, offset, None, None, b"x", []), failure)
    assert samples.moved("imgpipe_dead_letters_total", topic="imgpipe.rows.submitted", stage="image-worker") == 3


def instrumented_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/api/files/{request_id}/output.csv")
    async def output(request_id: str) -> dict:
        return {"id": request_id}

    @router.post("/api/upload/")
    async def upload() -> dict:
        return {}

    app.include_router(router)
    app.add_middleware(BodyLimit, limit=10)
    ingest_metrics.instrument(app)
    return app


def test_ingest_labels_each_request_by_its_route_template_never_by_its_path():
    client = TestClient(instrumented_app())
    samples = Samples()
    for request_id in ("a", "b", "c"):
        assert client.get(f"/api/files/{request_id}/output.csv").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/api/upload/").status_code == 405
    assert client.post("/api/upload/", content=b"x" * 100).status_code == 413  # refused before routing

    def counted(method: str, route: str, status: str) -> float:
        return samples.moved("imgpipe_http_requests_total", method=method, route=route, status=status)

    assert counted("GET", "/api/files/{request_id}/output.csv", "200") == 3
    assert counted("GET", "unmatched", "404") == 1
    assert counted("GET", "/api/upload/", "405") == 1
    assert counted("POST", "/api/upload/", "413") == 1
    assert (
        samples.moved("imgpipe_http_request_seconds_count", method="GET", route="/api/files/{request_id}/output.csv")
        == 3
    )


def test_ingest_serves_no_metrics_on_the_api_port():
    client = TestClient(instrumented_app())
    assert client.get("/metrics").status_code == 404


async def test_ingest_serves_its_metrics_on_a_port_of_its_own_and_nothing_else_there():
    client = TestClient(instrumented_app())
    assert client.get("/api/files/a/output.csv").status_code == 200
    port = MetricsPort("127.0.0.1", free_port())
    await port.start()
    try:
        base = f"http://127.0.0.1:{port.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200 and response.content_type == "text/plain"
                scraped = await response.text()
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 404
    finally:
        await port.stop()
    assert 'imgpipe_http_requests_total{method="GET",route="/api/files/{request_id}/output.csv",status="200"}' in (
        scraped
    )
    assert "process_resident_memory_bytes" in scraped
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http:
            await http.get(f"{base}/metrics")


async def test_a_metrics_port_in_use_is_named_in_the_error():
    first = MetricsPort("127.0.0.1", free_port())
    await first.start()
    try:
        second = MetricsPort("127.0.0.1", first.port)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port} \\(IMGPIPE_METRICS_PORT\\)"):
            await second.start()
    finally:
        await first.stop()
