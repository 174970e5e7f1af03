"""A faust service's own small HTTP port: ``/metrics`` for Prometheus, ``/healthz`` for compose and operators.

``/healthz`` answers 200 once the service can do its work: its consumer has finished its first rebalance
(it has its partitions, which may be none when a group has more members than partitions) and its
database answers a ping. Otherwise, and while the service drains at stop, it answers 503 with the
reasons. A rebalance after the first one does not make a service unhealthy: a group rebalances whenever
a member joins or leaves, and a healthcheck that failed then would restart healthy workers.

The server listens from the moment the app starts, before the consumer joins its group, so that a
service that is starting answers 503 rather than refusing connections.

``imgpipe_consumer_lag`` (per assigned topic and partition) is the broker's high watermark less the
next offset this process will read. faust's monitor records the last offset read and aiokafka the high
watermark of each fetch, so a scrape costs no request to the broker. The embedded broker (tansu)
reports wrong high watermarks, which makes the figure meaningless there; with Apache Kafka it is the
number of messages waiting for this consumer.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

Ping = Callable[[], Awaitable[Any]]


class HealthSettings(BaseSettings):
    """The metrics and health port of a faust service, read from ``IMGPIPE_METRICS_*``."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_METRICS_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on: 0.0.0.0 for a scraper on another host.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Port of /metrics and /healthz; unset: the service's own default."
    )
    ping_timeout_s: float = Field(2.0, gt=0, description="How long /healthz waits for the database's answer.")


async def unready_reasons(app: Any, ping: Ping, ping_timeout_s: float) -> list[str]:
    """Why the service cannot do its work now; empty when it can."""
    reasons = []
    if app.in_flight.draining:
        reasons.append("stopping")
    if not app.first_rebalance_done:
        reasons.append("the consumer has not completed its first partition assignment")
    try:
        await asyncio.wait_for(ping(), ping_timeout_s)
    except Exception as exc:  # noqa: BLE001 - whatever the database raises, it is not answering
        reasons.append(f"the database does not answer: {type(exc).__name__}: {exc}"[:300])
    return reasons


def consumer_lag(highwaters: Mapping[Any, int | None], last_read: Mapping[Any, int]) -> dict[Any, int]:
    """Messages behind, per partition: ``highwater`` is the offset the next message produced will get, and
    ``last_read`` the offset of the last message read. A partition without both is left out."""
    return {
        tp: max(0, highwater - last_read[tp] - 1)
        for tp, highwater in highwaters.items()
        if highwater is not None and tp in last_read
    }


class ConsumerLag(Collector):
    """Computed at each scrape from what the consumer already knows."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # no sample before the consumer has started: nothing to check against the registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "imgpipe_consumer_lag",
            "Messages of the partition not yet read by this consumer (meaningless on the embedded broker).",
            labels=["topic", "partition"],
        )
        for tp, lag in sorted(self._lag().items()):
            family.add_metric([tp.topic, str(tp.partition)], lag)
        yield family

    def _lag(self) -> dict[Any, int]:
        try:
            consumer = self._app.consumer
            highwaters = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
        except Exception:  # noqa: BLE001 - not started, stopping, or mid-rebalance: nothing to report
            return {}
        return consumer_lag(highwaters, self._app.monitor.tp_read_offsets)


class MetricsPort:
    """GET /metrics on an address of its own, served from the caller's event loop (ingest's, beside its API)."""

    served = "/metrics"

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.host, self.port = host, port
        self._registry = registry
        self._runner: web.AppRunner | None = None

    def routes(self, web_app: web.Application) -> None:
        web_app.router.add_get("/metrics", make_aiohttp_handler(self._registry))

    async def start(self) -> None:
        web_app = web.Application()
        self.routes(web_app)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"cannot listen on {self.host}:{self.port} (IMGPIPE_METRICS_PORT): {exc}") from exc
        self._runner = runner
        log.info("%s on http://%s:%d", self.served, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class HealthServer(MetricsPort):
    """A faust service's port: /metrics, and /healthz (ready once the app runs and its database answers)."""

    served = "/metrics and /healthz"

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        ping: Ping,
        *,
        ping_timeout_s: float = 2.0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(host, port, registry)
        self.app = app
        self._ping, self._ping_timeout_s = ping, ping_timeout_s

    def routes(self, web_app: web.Application) -> None:
        super().routes(web_app)
        web_app.router.add_get("/healthz", self.healthz)

    async def healthz(self, request: web.Request) -> web.Response:
        reasons = await unready_reasons(self.app, self._ping, self._ping_timeout_s)
        body = {
            "status": "error" if reasons else "success",
            "message": "; ".join(reasons) if reasons else "ok",
            "payload": {"ready": not reasons, "reasons": reasons},
        }
        return web.json_response(body, status=503 if reasons else 200)


def serve_health(app: Any, settings: HealthSettings, *, default_port: int, ping: Ping) -> HealthServer:
    """Adds the port to a faust app made by create_app: it listens from the app's start to its shutdown,
    and the consumer's lag joins the process's metrics."""
    server = HealthServer(
        app, settings.host, settings.port or default_port, ping, ping_timeout_s=settings.ping_timeout_s
    )
    REGISTRY.register(ConsumerLag(app))
    app.start_with(server.start)
    app.close_on_shutdown(server.stop)
    return server
