"""The faust services' health port (imgpipe_bus.health) over a stand-in app: when /healthz is ready, what
/metrics serves, and the consumer lag it computes."""

import asyncio
import importlib
from collections import namedtuple
from types import SimpleNamespace

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

from imgpipe_bus import BusSettings, HealthSettings, create_app
from imgpipe_bus.health import ConsumerLag, HealthServer, consumer_lag, unready_reasons
from imgpipe_ops.processes import free_port
from imgpipe_ops.stack import LocalStack, StackConfig
from tests.support.infra import COMPOSE_FILE

TP = namedtuple("TP", "topic partition")


def stand_in(*, assigned: bool = True, draining: bool = False) -> SimpleNamespace:
    return SimpleNamespace(first_rebalance_done=assigned, in_flight=SimpleNamespace(draining=draining))


async def answers() -> dict:
    return {"ok": 1.0}


async def refuses() -> dict:
    raise ConnectionError("connection refused")


async def hangs() -> dict:
    await asyncio.Event().wait()


async def test_ready_once_assigned_with_a_database_that_answers():
    assert await unready_reasons(stand_in(), answers, 1.0) == []
    assert await unready_reasons(stand_in(assigned=False), answers, 1.0) == [
        "the consumer has not completed its first partition assignment"
    ]
    [reason] = await unready_reasons(stand_in(), refuses, 1.0)
    assert reason == "the database does not answer: ConnectionError: connection refused"
    [reason] = await unready_reasons(stand_in(), hangs, 0.05)
    assert reason.startswith("the database does not answer: TimeoutError")
    assert await unready_reasons(stand_in(assigned=False, draining=True), refuses, 1.0) == [
        "stopping",
        "the consumer has not completed its first partition assignment",
        "the database does not answer: ConnectionError: connection refused",
    ]


def test_a_tuned_app_is_ready_only_after_its_first_rebalance_ends():
    app = create_app("health-probe", BusSettings(bootstrap_servers="127.0.0.1:1"))
    assert app.first_rebalance_done is False
    app.on_rebalance_start()
    assert app.first_rebalance_done is False
    app.on_rebalance_end()
    assert app.first_rebalance_done is True


def test_lag_is_the_high_watermark_less_the_next_offset_to_read():
    a0, a1, a2, a3 = (TP("a", p) for p in range(4))
    highwaters = {a0: 10, a1: 5, a2: None, a3: 7}
    last_read = {a0: 6, a1: 4, a2: 3}  # a1: read up to its end; a2: no high watermark yet; a3: nothing read
    assert consumer_lag(highwaters, last_read) == {a0: 3, a1: 0}
    assert consumer_lag({a0: 2}, {a0: 5}) == {a0: 0}  # a watermark behind what was read is not negative lag


def test_the_lag_collector_reports_assigned_partitions_and_nothing_before_the_consumer_starts():
    a0, a1 = TP("imgpipe.rows.submitted", 0), TP("imgpipe.rows.submitted", 1)
    consumer = SimpleNamespace(assignment=lambda: {a0, a1}, highwater={a0: 12, a1: 3}.get)
    app = SimpleNamespace(consumer=consumer, monitor=SimpleNamespace(tp_read_offsets={a0: 9, a1: 2}))
    [family] = ConsumerLag(app).collect()
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"topic": "imgpipe.rows.submitted", "partition": "0"}, 2.0),
        ({"topic": "imgpipe.rows.submitted", "partition": "1"}, 0.0),
    ]

    def not_started():
        raise RuntimeError("consumer not started")

    unstarted = SimpleNamespace(consumer=SimpleNamespace(assignment=not_started), monitor=app.monitor)
    [family] = ConsumerLag(unstarted).collect()
    assert family.samples == []


async def test_the_port_serves_healthz_and_the_metrics_of_its_registry():
    registry = CollectorRegistry()
    Counter("imgpipe_probe", "A counter of this test.", registry=registry).inc(3)
    app = stand_in(assigned=False)
    server = HealthServer(app, "127.0.0.1", free_port(), answers, registry=registry)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 503
                body = await response.json()
            assert body == {
                "status": "error",
                "message": "the consumer has not completed its first partition assignment",
                "payload": {
                    "ready": False,
                    "reasons": ["the consumer has not completed its first partition assignment"],
                },
            }
            app.first_rebalance_done = True
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {
                    "status": "success",
                    "message": "ok",
                    "payload": {"ready": True, "reasons": []},
                }
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200 and response.content_type == "text/plain"
                assert "imgpipe_probe_total 3.0" in await response.text()
    finally:
        await server.stop()


async def test_a_port_in_use_is_named_in_the_error():
    port = free_port()
    first = HealthServer(stand_in(), "127.0.0.1", port, answers, registry=CollectorRegistry())
    await first.start()
    try:
        second = HealthServer(stand_in(), "127.0.0.1", port, answers, registry=CollectorRegistry())
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port} \\(IMGPIPE_METRICS_PORT\\)"):
            await second.start()
    finally:
        await first.stop()


def test_the_port_is_a_setting_with_no_zero(monkeypatch):
    monkeypatch.setenv("IMGPIPE_METRICS_PORT", "9200")
    assert HealthSettings().port == 9200
    monkeypatch.setenv("IMGPIPE_METRICS_PORT", "0")
    with pytest.raises(ValueError):
        HealthSettings()
    monkeypatch.delenv("IMGPIPE_METRICS_PORT")
    assert HealthSettings().port is None  # the service's own default


def test_the_local_stack_gives_each_process_a_metrics_port_of_its_own():
    stack = LocalStack(StackConfig(env={"IMGPIPE_METRICS_PORT": "9101"}))
    try:
        ports = [
            int(stack.process_env(name, label)["IMGPIPE_METRICS_PORT"])
            for name, label in [
                ("ingest", "ingest"),
                ("image-worker", "image-worker-1"),
                ("image-worker", "image-worker-2"),
                ("assembler", "assembler"),
                ("notifier", "notifier"),
            ]
        ]
        assert len(set(ports)) == 5 and 9101 not in ports and stack.config.api_port not in ports
        assert stack.metrics_url("image-worker-2") == f"http://127.0.0.1:{ports[2]}"
        assert stack.metrics_url("ingest") == f"http://127.0.0.1:{ports[0]}"  # not the API's port
    finally:
        stack.stop()


@pytest.mark.parametrize("service", ["image-worker", "assembler", "notifier"])
def test_compose_checks_each_faust_service_on_its_default_health_port(service):
    module = importlib.import_module(f"imgpipe_{service.replace('-', '_')}.main")
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]
    check = " ".join(compose["healthcheck"]["test"])
    assert f"http://127.0.0.1:{module.METRICS_PORT}/healthz" in check
    assert "ports" not in compose  # nothing published to the host
    assert compose["environment"]["IMGPIPE_METRICS_HOST"] == "0.0.0.0"  # reachable by a scraper beside it


def test_compose_publishes_only_the_api_port_and_lets_a_scraper_beside_ingest_reach_its_metrics():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    ingest, api = services["ingest"], services["api"]
    assert "ports" not in ingest  # the api proxy in front of it is what the host reaches
    assert [str(port).split(":")[-2:] for port in api["ports"]] == [["8000", "8000"]]
    assert ingest["environment"]["IMGPIPE_METRICS_HOST"] == "0.0.0.0"
