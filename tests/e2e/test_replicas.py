"""Several processes of a service on one machine (`imgpipe run --replicas`): two ingests serve one API on one
port, and of two assemblers only one runs the reconciler, while both assemble the results of their partitions."""

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("replicas-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        replicas={"ingest": 2, "assembler": 2},
        env={"IMGPIPE_MONGO_DATABASE": f"replicas_{uuid.uuid4().hex[:8]}", "IMGPIPE_RECONCILE_INTERVAL_S": "0.3"},
    )
    with LocalStack(config) as running:
        yield running


def counter(stack: LocalStack, label: str, name: str) -> float:
    """The sum of a counter's samples in the /metrics of process ``label``."""
    text = httpx.get(f"{stack.metrics_url(label)}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


def test_two_ingests_share_the_api_port_and_each_answers(stack):
    assert [p.name for p in stack.copies("ingest")] == ["ingest-1", "ingest-2"]

    def both_answered() -> bool:
        httpx.get(f"{stack.api_url}/healthz", timeout=5)  # a new connection each time: the kernel spreads them
        return all(counter(stack, label, "imgpipe_http_requests") > 0 for label in ("ingest-1", "ingest-2"))

    wait_for(both_answered, 60, "both ingest processes answered on the one API port", poll_s=0.01)


def test_of_two_assemblers_one_runs_the_reconciler_and_both_assemble(stack):
    labels = ("assembler-1", "assembler-2")
    wait_for(
        lambda: all(httpx.get(f"{stack.metrics_url(label)}/healthz", timeout=5).status_code == 200 for label in labels),
        60,
        "both assemblers have their partitions",
    )
    before = {label: counter(stack, label, "imgpipe_reconciler_passes") for label in labels}
    wait_for(
        lambda: sum(counter(stack, label, "imgpipe_reconciler_passes") - before[label] for label in labels) >= 5,
        60,
        "five reconciler passes",
    )
    ran = [label for label in labels if counter(stack, label, "imgpipe_reconciler_passes") > before[label]]
    assert len(ran) == 1, f"reconciler passes ran on {ran}"

    photo = photo_like_jpeg(320, 240, seed=7)
    with LocalHttpServer(routes={f"/p/{i}.jpg": Route(photo) for i in range(16)}) as sources:
        ids = [upload(stack.api_url, products_csv([(1, f"P{n}", [f"{sources.url}/p/{n}.jpg"])])) for n in range(16)]
        for request_id in ids:
            assert wait_until_finished(stack.api_url, request_id, timeout=60)["status"] == "SUCCESS"
    assert all(counter(stack, label, "imgpipe_row_results") > 0 for label in labels), "each assembled some results"
