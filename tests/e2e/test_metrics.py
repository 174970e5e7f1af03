"""Every service's /metrics, each on a port of its own, scraped before and after one request, moved by exactly
what the request did; each faust service's /healthz."""

import base64
import csv
import io
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import Process, free_port, venv_command
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from tests.waiting import wait_for

SECRET = "whsec_" + base64.b64encode(b"metrics test secret!").decode()
PHOTO = photo_like_jpeg(320, 240, seed=7)
NOT_AN_IMAGE = b"this is text, not a picture"
GOOD = 3  # images that compress
FAILING = {"http_404": 1, "not_an_image": 1, "http_503": 1}  # error code -> images failing with it
ROWS = 2
FAUST_SERVICES = ("image-worker", "assembler", "notifier")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sources():
    """The images, and the webhook receiver: its first POST is answered 503, the retry 200."""
    routes = {f"/ok/{i}.jpg": Route(PHOTO) for i in range(GOOD)}
    routes["/text.jpg"] = Route(NOT_AN_IMAGE)
    routes["/busy.jpg"] = Route(b"", status=503)
    with LocalHttpServer(routes=routes, post_statuses=[503]) as server:
        yield server


def healthz(url: str) -> tuple[int, dict] | None:
    try:
        response = httpx.get(f"{url}/healthz", timeout=5)
    except httpx.TransportError:
        return None
    return response.status_code, response.json()


def test_a_faust_service_answers_503_until_it_has_its_partitions_and_while_its_database_is_down(infra, tmp_path):
    """Run before the stack starts (its notifier would share this one's consumer group)."""
    port = free_port()
    env = {
        "IMGPIPE_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
        "IMGPIPE_MONGO_URL": f"mongodb://127.0.0.1:{free_port()}/?retryWrites=false",  # nothing listens there
        "IMGPIPE_MONGO_TIMEOUT_MS": "500",
        "IMGPIPE_METRICS_PORT": str(port),
        "IMGPIPE_WEBHOOK_SECRET": SECRET,
        "IMGPIPE_KAFKA_DRAIN_TIMEOUT_S": "1",
    }
    notifier = Process("notifier", [venv_command("notifier")], env=env, log=tmp_path / "notifier.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        status, first = wait_for(lambda: healthz(url), 30, "the notifier's health port answered")
        assert status == 503
        reasons = first["payload"]["reasons"]
        assert any("first partition assignment" in reason for reason in reasons), reasons
        assert any("database does not answer" in reason for reason in reasons), reasons

        def assigned_but_database_down():
            answer = healthz(url)
            return answer if answer and len(answer[1]["payload"]["reasons"]) == 1 else None

        status, later = wait_for(assigned_but_database_down, 30, "the notifier's consumer got its partitions")
        assert status == 503 and later["status"] == "error"
        assert later["payload"]["reasons"][0].startswith("the database does not answer")
    finally:
        notifier.stop(grace=20)


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("metrics-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={
            "IMGPIPE_MONGO_DATABASE": f"metrics_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_WEBHOOK_SECRET": SECRET,
            # The worker stores the outputs itself (in the directory store the codec processes do).
            "IMGPIPE_BLOB_STORE": "gridfs",
            "IMGPIPE_FETCH_ATTEMPTS": "1",
            "IMGPIPE_WEBHOOK_RETRY_SCHEDULE_S": "0.2",
            "IMGPIPE_WEBHOOK_POLL_S": "0.2",
        },
    )
    with LocalStack(config) as running:
        yield running


def scrape(url: str) -> dict[tuple, float]:
    """Every sample of ``url``/metrics: (name, sorted labels) -> value."""
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_the_counters_move_by_what_one_request_did(stack, sources):
    urls = {label: stack.metrics_url(label) for label in ("ingest", *FAUST_SERVICES)}
    for label in FAUST_SERVICES:
        wait_for(lambda label=label: (healthz(urls[label]) or (0,))[0] == 200, 60, f"{label} is ready")
        status, body = healthz(urls[label])
        assert body["payload"] == {"ready": True, "reasons": []}
    before = {label: scrape(url) for label, url in urls.items()}

    ok = [f"{sources.url}/ok/{i}.jpg" for i in range(GOOD)]
    failing = [f"{sources.url}/missing.jpg", f"{sources.url}/text.jpg", f"{sources.url}/busy.jpg"]
    table = products_csv([(1, "Hat", ok[:2] + failing[:1]), (2, "Cap", ok[2:] + failing[1:])])
    request_id = upload(stack.api_url, table, webhook_url=f"{sources.url}/hook")
    finished = wait_until_finished(stack.api_url, request_id, timeout=60)
    assert finished["status"] == "SUCCESS"
    wait_for(lambda: len(sources.received) == 2, 30, "the webhook was retried and delivered")

    def notifier_counted():
        after = scrape(urls["notifier"])
        return (
            after
            if moved(before["notifier"], after, "imgpipe_webhook_attempts_total", outcome="delivered", answer="2xx")
            == 1
            else None
        )

    notifier = wait_for(notifier_counted, 10, "the delivered attempt was counted")
    after = {label: scrape(url) for label, url in urls.items()}
    after["notifier"] = notifier
    worker = lambda name, **labels: moved(before["image-worker"], after["image-worker"], name, **labels)  # noqa: E731
    assembler = lambda name, **labels: moved(before["assembler"], after["assembler"], name, **labels)  # noqa: E731

    assert worker("imgpipe_images_total", outcome="ok", error_code="") == GOOD
    for code, count in FAILING.items():
        assert worker("imgpipe_images_total", outcome="failed", error_code=code) == count, code
    assert worker("imgpipe_rows_processed_total") == ROWS
    assert worker("imgpipe_source_bytes_total") == GOOD * len(PHOTO) + len(NOT_AN_IMAGE)
    output = list(csv.reader(io.StringIO(httpx.get(finished["output_file_url"], timeout=10).text)))
    outputs = [link for row in output[1:] for link in row[3].split(",") if link]
    assert len(outputs) == GOOD
    assert worker("imgpipe_output_bytes_total") == sum(len(httpx.get(link, timeout=10).content) for link in outputs)
    assert worker("imgpipe_fetch_seconds_count", outcome="ok") == GOOD + 1  # the text was fetched, then refused
    assert worker("imgpipe_fetch_seconds_count", outcome="failed") == 2
    assert worker("imgpipe_compress_seconds_count", outcome="ok") == GOOD
    assert worker("imgpipe_compress_seconds_count", outcome="failed") == 1
    assert worker("imgpipe_store_seconds_count") == GOOD
    # The row with the transient 503 is kept for replay.
    assert worker("imgpipe_dead_letters_total", topic="imgpipe.rows.submitted", stage="image-worker") == 1

    assert assembler("imgpipe_row_results_total") == ROWS
    assert assembler("imgpipe_requests_completed_total", status="SUCCESS") == 1
    assert assembler("imgpipe_requests_completed_total", status="FAILED") == 0
    assert assembler("imgpipe_rows_completed_total") == ROWS

    notified = lambda **labels: moved(before["notifier"], after["notifier"], "imgpipe_webhook_attempts_total", **labels)  # noqa: E731
    assert notified(outcome="retrying", answer="5xx") == 1
    assert notified(outcome="delivered", answer="2xx") == 1
    assert moved(before["notifier"], after["notifier"], "imgpipe_webhook_seconds_count") == 2

    uploads = moved(
        before["ingest"],
        after["ingest"],
        "imgpipe_http_requests_total",
        method="POST",
        route="/api/upload/",
        status="200",
    )
    assert uploads == 1
    assert (
        moved(
            before["ingest"], after["ingest"], "imgpipe_http_request_seconds_count", method="POST", route="/api/upload/"
        )
        == 1
    )

    assert urls["ingest"] != stack.api_url
    assert httpx.get(f"{stack.api_url}/metrics", timeout=5).status_code == 404  # the API's port has none

    for label, samples in after.items():
        assert samples[("process_resident_memory_bytes", ())] > 0, label
        assert ("process_cpu_seconds_total", ()) in samples, label
    exposition = httpx.get(f"{urls['image-worker']}/metrics", timeout=5).text
    assert "# TYPE imgpipe_consumer_lag gauge" in exposition
    print(
        "consumer lag as the embedded broker reports it:",
        [line for line in exposition.splitlines() if line.startswith("imgpipe_consumer_lag{")],
    )
