"""Runs ingest: the API on IMGPIPE_HOST:IMGPIPE_PORT, and its /metrics on a port of its own
(IMGPIPE_METRICS_HOST:IMGPIPE_METRICS_PORT), both in one event loop."""

import asyncio
import sys

import uvicorn

from imgpipe_bus import HealthSettings, ensure_topics
from imgpipe_bus.health import MetricsPort
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.logs import configure_logging
from imgpipe_runtime.settings import load_settings

# /metrics, unless IMGPIPE_METRICS_PORT says otherwise (the faust services have 9101-9103).
METRICS_PORT = 9104
# What uvicorn exits with when the app could not start.
STARTUP_FAILURE = 3


async def serve(api: uvicorn.Server, metrics: MetricsPort) -> None:
    """The metrics port listens from before the API starts until after it has stopped."""
    await metrics.start()
    try:
        await api.serve()
    finally:
        await metrics.stop()


def main() -> None:
    settings = load_settings(Settings, "ingest")
    metrics = load_settings(HealthSettings, "ingest")
    configure_logging("ingest", settings.log)
    ensure_topics(settings.kafka)
    config = uvicorn.Config(
        create_api(settings), host=settings.host, port=settings.port, log_config=None, access_log=settings.log.access
    )
    api = uvicorn.Server(config)
    asyncio.run(serve(api, MetricsPort(metrics.host, metrics.port or METRICS_PORT)))
    if not api.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
