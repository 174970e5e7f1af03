"""A request queued behind a big one waits: it is never re-driven, re-fetched or failed for waiting."""

import time
import uuid

import pytest

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig

BIG, SMALL, STALL_S = 120, 5, 2
pytestmark = pytest.mark.e2e


@pytest.fixture
def sources():
    photos = [photo_like_jpeg(300, 200, seed=i) for i in range(4)]
    routes = {
        f"/{name}/{i}.jpg": Route(photos[i % 4], delay_s=0.1) for name in ("big", "small") for i in range(BIG * 2)
    }
    with LocalHttpServer(routes=routes) as server:
        yield server


@pytest.fixture
def stack(infra, tmp_path):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path / "logs",
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={
            "IMGPIPE_MONGO_DATABASE": f"backlog_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_RECONCILE_INTERVAL_S": "0.5",
            "IMGPIPE_RECONCILE_STALL_S": str(STALL_S),
            "IMGPIPE_RECONCILE_MAX_ROUNDS": "1",
            "IMGPIPE_WORKER_CONCURRENCY": "2",
        },
    )
    with LocalStack(config) as running:
        yield running


def test_a_small_request_behind_a_big_one_waits_and_every_source_is_fetched_once(stack, sources):
    big_rows = [(r + 1, f"B{r}", [f"{sources.url}/big/{r}.jpg"]) for r in range(BIG)]
    small_rows = [
        (r + 1, f"S{r}", [f"{sources.url}/small/{2 * r}.jpg", f"{sources.url}/small/{2 * r + 1}.jpg"])
        for r in range(SMALL)
    ]
    big = upload(stack.api_url, products_csv(big_rows))
    started = time.monotonic()
    small = upload(stack.api_url, products_csv(small_rows))
    small_final = wait_until_finished(stack.api_url, small, timeout=180)
    waited = time.monotonic() - started
    big_final = wait_until_finished(stack.api_url, big, timeout=180)
    # It waited long enough behind the big one to count as stalled several times over.
    assert waited > 3 * STALL_S, f"the small request finished after {waited:.1f} s: it did not wait"
    assert (small_final["status"], small_final["progress"]["images_ok"]) == ("SUCCESS", 2 * SMALL)
    assert (big_final["status"], big_final["progress"]["images_ok"]) == ("SUCCESS", BIG)
    fetched_twice = {path: count for path, count in sources.fetched.items() if count != 1}
    assert not fetched_twice, f"sources fetched more than once: {fetched_twice}"
    assert len(sources.fetched) == BIG + 2 * SMALL
