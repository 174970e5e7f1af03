"""The broker and the database restart under a running request. These tests own their processes, so
they always run on the embedded broker and database, whatever IMGPIPE_TEST_BACKEND says."""

import time

import httpx
import pytest

from tests.waiting import wait_for
from imgpipe_ops.client import FINISHED, upload
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig

ROWS, PER_ROW = 12, 3
pytestmark = pytest.mark.e2e


@pytest.fixture
def sources():
    photos = [photo_like_jpeg(500, 400, seed=i) for i in range(4)]
    routes = {f"/p/{i}.jpg": Route(photos[i % 4], delay_s=0.2) for i in range(ROWS * PER_ROW)}
    with LocalHttpServer(routes=routes) as server:
        yield server


@pytest.fixture
def stack(tmp_path):
    config = StackConfig(
        api_port=free_port(),
        kafka_port=free_port(),
        mongo_port=free_port(),
        storage=str(tmp_path / "db"),
        log_dir=tmp_path / "logs",
        env={
            "IMGPIPE_RECONCILE_INTERVAL_S": "1",
            "IMGPIPE_RECONCILE_STALL_S": "4",
            "IMGPIPE_RECONCILE_MAX_ROUNDS": "30",  # give up only far beyond a slow restart on a loaded machine
            "IMGPIPE_WORKER_CONCURRENCY": "2",
        },
    )
    with LocalStack(config) as running:
        stop = running.supervise_in_background()
        yield running
        stop.set()


def progress_of(stack, request_id) -> dict | None:
    """The status payload, or None while the API cannot answer (its database is down)."""
    try:
        response = httpx.get(f"{stack.api_url}/api/output/", params={"request_id": request_id}, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json()["payload"] if response.status_code == 200 else None



def run_with_restart(stack, sources, restart) -> dict:
    rows = [(r + 1, f"P{r + 1}", [f"{sources.url}/p/{r * PER_ROW + j}.jpg" for j in range(PER_ROW)]) for r in range(ROWS)]
    baseline_id = upload(stack.api_url, products_csv(rows))
    baseline = wait_for(
        lambda: (p := progress_of(stack, baseline_id)) and p["status"] in FINISHED and p, 120, "the baseline run"
    )
    expected = httpx.get(baseline["output_file_url"]).text.replace(baseline_id, "REQUEST")
    request_id = upload(stack.api_url, products_csv(rows), webhook_url=f"{sources.url}/hook")
    wait_for(
        lambda: (p := progress_of(stack, request_id)) and 0 < p["progress"]["rows_done"] < ROWS, 60, "half done"
    )
    started = time.monotonic()
    restart()
    final = wait_for(
        lambda: (p := progress_of(stack, request_id)) and p["status"] in FINISHED and p, 180, "the request to finish"
    )
    print(f"finished {time.monotonic() - started:.1f} s after the restart")
    assert final["status"] == "SUCCESS"
    assert final["progress"] == {
        "rows_total": ROWS, "rows_done": ROWS, "images_total": ROWS * PER_ROW,
        "images_ok": ROWS * PER_ROW, "images_failed": 0,
    }
    output = httpx.get(final["output_file_url"]).text
    assert output.count(f"/api/files/{request_id}/images/") == ROWS * PER_ROW
    assert output.replace(request_id, "REQUEST") == expected  # byte for byte, as without the restart
    wait_for(lambda: [r for r in sources.received if request_id.encode() in r.body], 60, "the webhook")
    return final


def test_broker_killed_and_restarted_empty_the_reconciler_finishes_the_request(stack, sources):
    def restart_broker() -> None:
        stack.broker.kill()
        stack.start_broker()

    run_with_restart(stack, sources, restart_broker)


def test_database_restarted_mid_request(stack, sources):
    def restart_database() -> None:
        stack.database.kill()
        stack.start_database()

    run_with_restart(stack, sources, restart_database)
