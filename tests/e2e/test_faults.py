"""Failures on real processes: every request still finishes, exactly once in its counts."""

import base64
import csv
import io
import json
import re
import signal
import subprocess
import time
import uuid

import httpx
import pytest
from confluent_kafka import Producer

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.dlq import Filters
from imgpipe_ops.dlq import read as read_dead_letters
from imgpipe_ops.processes import free_port, venv_command
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_runtime.webhooks import verify
from imgpipe_schemas.topics import REQUESTS_COMPLETED, ROWS_PROCESSED, ROWS_SUBMITTED
from tests.waiting import holds_for, wait_for

SECRET = "whsec_" + base64.b64encode(b"fault test secret").decode()
ROWS, PER_ROW = 16, 3
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sources():
    photos = [photo_like_jpeg(600, 400, seed=i) for i in range(6)]
    # Each row's images come 50 ms later than the row before's: the rows finish one after another over about
    # a second, so "the request half done" lasts long enough to be seen, rather than every row finishing
    # together and landing in one batch of the assembler.
    routes = {f"/p/{i}.jpg": Route(photos[i % 6], delay_s=0.15 + 0.05 * (i // PER_ROW)) for i in range(ROWS * PER_ROW)}
    with LocalHttpServer(routes=routes) as server:
        yield server


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("fault-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        image_workers=2,
        env={
            "IMGPIPE_WEBHOOK_SECRET": SECRET,
            "IMGPIPE_MONGO_DATABASE": f"faults_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.5,1",
            "IMGPIPE_WEBHOOK_POLL_S": "0.2",
            "IMGPIPE_FETCH_ATTEMPTS": "2",
            "IMGPIPE_RECONCILE_INTERVAL_S": "1",
            "IMGPIPE_RECONCILE_STALL_S": "20",
            "IMGPIPE_WORKER_CONCURRENCY": "4",
        },
    )
    with LocalStack(config) as running:
        stop = running.supervise_in_background()
        yield running
        stop.set()


def status(stack, request_id) -> dict:
    return httpx.get(f"{stack.api_url}/api/output/", params={"request_id": request_id}).json()["payload"]


def request_csv(sources, rows=ROWS) -> bytes:
    return products_csv(
        [(r + 1, f"P{r + 1}", [f"{sources.url}/p/{r * PER_ROW + j}.jpg" for j in range(PER_ROW)]) for r in range(rows)]
    )


def normalised_output(final: dict, request_id: str) -> str:
    return httpx.get(final["output_file_url"]).text.replace(request_id, "REQUEST")


@pytest.fixture(scope="module")
def baseline(stack, sources) -> str:
    """The output CSV of a run without faults."""
    request_id = upload(stack.api_url, request_csv(sources))
    final = wait_until_finished(stack.api_url, request_id, timeout=120)
    assert final["progress"]["images_ok"] == ROWS * PER_ROW
    return normalised_output(final, request_id)


def assignments(log_text: str) -> set[int]:
    found = re.findall(r"Setting newly assigned partitions (\{.*?\}|set\(\)) for group image-worker", log_text)
    return {int(p) for p in re.findall(r"partition=(\d+)", found[-1])} if found else set()


def test_two_image_workers_share_the_partitions_of_one_group(stack, baseline):
    logs = [stack.config.log_dir / "image-worker-1.log", stack.config.log_dir / "image-worker-2.log"]

    def split() -> bool:
        first, second = (assignments(log.read_text()) for log in logs)
        return bool(first) and bool(second) and not (first & second) and len(first | second) == 4

    wait_for(split, 30, "the rows partitions split between two workers")


def kill_mid_request(stack, sources, baseline, labels: list[str]) -> dict:
    request_id = upload(stack.api_url, request_csv(sources), webhook_url=f"{sources.url}/hook-{uuid.uuid4().hex}")
    wait_for(lambda: 0 < status(stack, request_id)["progress"]["rows_done"] < ROWS, 60, "the request half done")
    killed_at = time.monotonic()
    for label in labels:
        stack.service(label).popen.kill()
    final = wait_until_finished(stack.api_url, request_id, timeout=120)
    print(f"killed {labels}: finished {time.monotonic() - killed_at:.1f} s later")
    assert final["status"] == "SUCCESS"
    assert final["progress"] == {
        "rows_total": ROWS,
        "rows_done": ROWS,
        "images_total": ROWS * PER_ROW,
        "images_ok": ROWS * PER_ROW,
        "images_failed": 0,
    }
    assert normalised_output(final, request_id) == baseline
    # A killed process is an outage, never a message's failure: nothing of the request was dead-lettered.
    assert list(read_dead_letters(stack.bootstrap, Filters(request_id=request_id))) == []
    return {"request_id": request_id, **final}


def test_kill_9_an_image_worker_mid_request(stack, sources, baseline):
    kill_mid_request(stack, sources, baseline, ["image-worker-1"])


def test_sigterm_drains_an_image_workers_work_in_flight(stack, sources, baseline):
    worker = stack.service("image-worker-2")
    popen = worker.popen
    request_id = upload(stack.api_url, request_csv(sources))
    wait_for(lambda: 0 < status(stack, request_id)["progress"]["rows_done"] < ROWS, 60, "the request half done")
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(60) == 0
    log = worker.log.read_text()
    assert "drained in-flight work before stopping (0 still running)" in log
    final = wait_until_finished(stack.api_url, request_id, timeout=120)
    assert final["progress"]["images_ok"] == ROWS * PER_ROW
    assert normalised_output(final, request_id) == baseline


def test_kill_9_the_assembler_and_the_notifier_mid_request(stack, sources, baseline):
    final = kill_mid_request(stack, sources, baseline, ["assembler", "notifier"])

    def hooks() -> list:
        return [r for r in sources.received if final["request_id"].encode() in r.body]

    wait_for(hooks, 60, "the webhook")
    # Killed before the completion, the notifier sends it once: no second send turns up later either.
    holds_for(lambda: len(hooks()) == 1, 5, "exactly one webhook")
    [hook] = hooks()
    verify(SECRET, hook.body, hook.headers)


def test_webhook_retried_with_the_same_id_until_the_receiver_recovers(stack, sources, baseline):
    with LocalHttpServer(post_statuses=[500, 503]) as receiver:
        request_id = upload(stack.api_url, request_csv(sources, rows=1), webhook_url=f"{receiver.url}/hook")
        wait_until_finished(stack.api_url, request_id, timeout=60)
        wait_for(lambda: len(receiver.received) >= 3, 30, "three webhook attempts")
        delivery = wait_for(
            lambda: [d for d in status(stack, request_id)["webhooks"] if d["state"] == "delivered"], 10, "delivered"
        )[0]
    assert len({hook.headers["webhook-id"] for hook in receiver.received}) == 1
    assert len(receiver.received) == 3
    assert [a["outcome"] for a in delivery["attempts"]] == [500, 503, 200]


def test_a_webhook_refused_for_good_is_dead_lettered_with_where_it_came_from(stack, sources, baseline):
    with LocalHttpServer(post_status=400) as receiver:
        request_id = upload(stack.api_url, request_csv(sources, rows=1), webhook_url=f"{receiver.url}/hook")
        wait_until_finished(stack.api_url, request_id, timeout=60)
        failed = wait_for(
            lambda: [d for d in status(stack, request_id)["webhooks"] if d["state"] == "failed"],
            30,
            "a failed delivery",
        )[0]
    assert [a["outcome"] for a in failed["attempts"]] == [400]
    letters = wait_for(
        lambda: list(read_dead_letters(stack.bootstrap, Filters(topic=REQUESTS_COMPLETED.name, request_id=request_id))),
        30,
        "the dead letter",
    )
    [letter] = letters
    assert letter.context("consumer.group") == "notifier"
    assert letter.context("exception.class") == "imgpipe_notifier.handlers.DeliveryFailed"
    assert "failed after 1 attempt(s): 400" in letter.context("exception.message")
    assert letter.context("origin.topic") == REQUESTS_COMPLETED.name and letter.context("origin.offset").isdigit()
    assert json.loads(letter.value)["event_id"] == failed["webhook_id"]


def test_a_failed_webhook_replayed_is_attempted_again_with_its_id(stack, sources):
    with LocalHttpServer(post_statuses=[400]) as receiver:
        request_id = upload(stack.api_url, request_csv(sources, rows=1), webhook_url=f"{receiver.url}/hook")
        wait_until_finished(stack.api_url, request_id, timeout=60)
        wait_for(lambda: [d for d in status(stack, request_id)["webhooks"] if d["state"] == "failed"], 30, "failed")
        wait_for(lambda: request_id in dlq_cli(stack, "list", "--request", request_id), 30, "the dead letter")
        replayed = dlq_cli(stack, "replay", "--request", request_id, "--topic", REQUESTS_COMPLETED.name)
        assert "replayed 1 dead letter" in replayed
        [delivery] = wait_for(
            lambda: [d for d in status(stack, request_id)["webhooks"] if d["state"] == "delivered"], 30, "delivered"
        )
        assert [attempt["outcome"] for attempt in delivery["attempts"]] == [400, 200]
        assert [hook.headers["webhook-id"] for hook in receiver.received] == [delivery["webhook_id"]] * 2
        verify(SECRET, receiver.received[1].body, receiver.received[1].headers)


def dlq_cli(stack, *args: str) -> str:
    result = subprocess.run(
        [venv_command("imgpipe"), "dlq", *args, "--bootstrap", stack.bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_poison_messages_land_in_dead_letter_topics_and_the_pipeline_keeps_flowing(stack, sources, baseline):
    marker = uuid.uuid4().hex
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for topic in (ROWS_SUBMITTED, ROWS_PROCESSED, REQUESTS_COMPLETED):
        producer.produce(topic.name, key=marker.encode(), value=f"not json {marker}".encode())
    producer.flush(10)

    request_id = upload(stack.api_url, request_csv(sources, rows=2))
    assert wait_until_finished(stack.api_url, request_id, timeout=60)["status"] == "SUCCESS"

    def poisoned() -> list[str]:
        listing = dlq_cli(stack, "list", "--error", "PoisonMessage")
        return [line for line in listing.splitlines() if "PoisonMessage" in line]

    lines = wait_for(lambda: len(poisoned()) >= 3 and poisoned(), 60, "three dead letters")
    origins = {re.search(r"origin=(\S+)", line).group(1) for line in lines}
    assert origins == {ROWS_SUBMITTED.name, ROWS_PROCESSED.name, REQUESTS_COMPLETED.name}


def test_a_failed_url_fixed_and_replayed_updates_the_output(stack, sources):
    broken = f"/flaky/{uuid.uuid4().hex}.jpg"
    sources.routes[broken] = Route(b"", status=503)
    csv_bytes = products_csv([(1, "Fixed later", [f"{sources.url}/p/0.jpg", f"{sources.url}{broken}"])])
    request_id = upload(stack.api_url, csv_bytes, webhook_url=f"{sources.url}/hook-{uuid.uuid4().hex}")
    first = wait_until_finished(stack.api_url, request_id, timeout=60)
    assert first["progress"]["images_failed"] == 1
    assert "http_503" in httpx.get(first["output_file_url"]).text

    wait_for(lambda: request_id in dlq_cli(stack, "list", "--request", request_id), 30, "the row dead-lettered")
    assert "would replay" in dlq_cli(stack, "replay", "--request", request_id, "--dry-run")
    sources.routes[broken] = Route(photo_like_jpeg(300, 200, seed=9))
    assert "replayed 1 dead letter" in dlq_cli(stack, "replay", "--request", request_id, "--topic", ROWS_SUBMITTED.name)

    wait_for(lambda: status(stack, request_id)["progress"]["images_failed"] == 0, 60, "the replayed row to succeed")
    table = list(csv.DictReader(io.StringIO(httpx.get(first["output_file_url"]).text)))
    assert table[0]["Image Errors"] == "" and "" not in table[0]["Output Image Urls"].split(",")

    def webhooks() -> list[dict]:
        return [json.loads(r.body) for r in sources.received if request_id.encode() in r.body]

    wait_for(lambda: len(webhooks()) >= 2, 30, "the update webhook")
    assert [hook["type"] for hook in webhooks()] == ["request.completed", "request.updated"]
    assert webhooks()[1]["data"]["progress"]["images_failed"] == 0
