"""Runs ingest: the API on IMGPIPE_HOST:IMGPIPE_PORT, and its /metrics on a port of its own
(IMGPIPE_METRICS_HOST:IMGPIPE_METRICS_PORT), both in one event loop."""

import asyncio
import socket
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


async def serve(api: uvicorn.Server, metrics: MetricsPort, sockets: list[socket.socket] | None) -> None:
    """The metrics port listens from before the API starts until after it has stopped."""
    await metrics.start()
    try:
        await api.serve(sockets)
    finally:
        await metrics.stop()


def shared_socket(host: str, port: int) -> socket.socket:
    """The API's socket, bound with SO_REUSEPORT: every ingest process of the machine binds the same port,
    and the kernel spreads the connections among them, as a proxy in front of them would."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def main() -> None:
    settings = load_settings(Settings, "ingest")
    metrics = load_settings(HealthSettings, "ingest")
    configure_logging("ingest", settings.log)
    ensure_topics(settings.kafka)
    config = uvicorn.Config(
        create_api(settings), host=settings.host, port=settings.port, log_config=None, access_log=settings.log.access
    )
    api = uvicorn.Server(config)
    sockets = [shared_socket(settings.host, settings.port)] if settings.reuse_port else None
    asyncio.run(serve(api, MetricsPort(metrics.host, metrics.port or METRICS_PORT), sockets))
    if not api.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
