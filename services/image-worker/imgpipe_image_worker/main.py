"""Wires the image-worker: a faust agent over the rows topic, a process pool for Pillow."""

import functools

import aiohttp

from imgpipe_bus import (
    EventProducer,
    HealthSettings,
    ServiceApp,
    agent_stage,
    create_app,
    faust_topic,
    handle_each,
    run_service,
    serve_health,
)
from imgpipe_image_worker import handlers
from imgpipe_image_worker.adapters.codec_pool import CodecPool
from imgpipe_image_worker.adapters.downloader import Downloader
from imgpipe_image_worker.budgets import ByteBudget
from imgpipe_image_worker.compress import Encoding
from imgpipe_image_worker.settings import Settings
from imgpipe_image_worker.shares import KeyedSlots, request_share
from imgpipe_image_worker.sources import SharedSources
from imgpipe_runtime.blobs import open_blob_store
from imgpipe_runtime.logs import about_request
from imgpipe_runtime.mongo import OUTAGES, connect
from imgpipe_runtime.netpolicy import NetPolicy
from imgpipe_schemas import RowSubmitted
from imgpipe_schemas.topics import IMAGE_WORKER_GROUP, ROWS_SUBMITTED

# /metrics and /healthz, unless IMGPIPE_METRICS_PORT says otherwise.
METRICS_PORT = 9101


def build_app(settings: Settings, health: HealthSettings) -> ServiceApp:
    app = create_app(IMAGE_WORKER_GROUP, settings.kafka)
    db = connect(settings.mongo)
    blobs = open_blob_store(settings.blobs, db)
    encoding = Encoding(max_pixels=settings.max_image_pixels, jpeg_optimize=settings.jpeg_optimize)
    codecs = CodecPool(settings.compress_processes, encoding, blobs.writer(), cpu_limit_s=settings.compress_cpu_s)
    producer = EventProducer(settings.kafka)
    downloader = Downloader(
        max_bytes=settings.max_image_bytes,
        # sock_connect, not connect: aiohttp's connect also counts the wait for a free connection.
        timeout=aiohttp.ClientTimeout(
            total=settings.fetch_total_timeout_s, sock_connect=settings.fetch_connect_timeout_s
        ),
        policy=NetPolicy.parse(settings.fetch_allow),
        bytes_in_flight=ByteBudget(settings.download_bytes_in_flight),
        max_redirects=settings.fetch_max_redirects,
        attempts=settings.fetch_attempts,
        connections=settings.fetch_connections,
        connections_per_host=settings.fetch_connections_per_host,
    )

    async def close() -> None:
        await downloader.close()
        await producer.close()
        await db.client.close()
        codecs.close()

    app.close_on_shutdown(close)

    adapters = handlers.Adapters(
        fetch=downloader.fetch,
        compress=codecs.compress,
        blobs=blobs,
        producer=producer,
        public_base_url=settings.public_base_url,
        sources=SharedSources(),
        image_budget_s=settings.image_budget_s,
        row_budget_s=settings.row_budget_s,
        request_fetches=KeyedSlots(request_share(settings.fetch_connections)),
    )
    stage = agent_stage(app, ROWS_SUBMITTED, producer, OUTAGES)

    @app.agent(faust_topic(app, ROWS_SUBMITTED), concurrency=settings.worker_concurrency)
    async def process_rows(stream):
        await handle_each(stream, stage, functools.partial(handlers.handle_row, adapters=adapters), about=about_row)

    serve_health(app, health, default_port=METRICS_PORT, ping=lambda: db.command("ping"))
    return app


def about_row(row: RowSubmitted):
    return about_request(row.request_id, row.row_index)


def main() -> None:
    run_service("image-worker", Settings, build_app)


if __name__ == "__main__":
    main()
