"""Wires the assembler: one faust agent over the row results, batched into MongoDB."""

import faust

from imgpipe_assembler import handlers
from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.settings import Settings
from imgpipe_bus import EventProducer, create_app, ensure_topics, event_batches, faust_topic, run_worker
from imgpipe_runtime.blobs import BlobStore
from imgpipe_runtime.logs import configure_logging
from imgpipe_runtime.mongo import connect
from imgpipe_schemas.topics import ROWS_PROCESSED


def build_app(settings: Settings) -> faust.App:
    app = create_app("assembler", settings.kafka)
    db = connect(settings.mongo)
    store = ProgressStore(db)
    blobs = BlobStore(db)
    producer = EventProducer(settings.kafka)

    async def close() -> None:
        await producer.close()
        await db.client.close()

    app.close_on_shutdown(close)

    # One actor: results of a request share a partition, so a request is assembled by one actor at a time.
    @app.agent(faust_topic(app, ROWS_PROCESSED), concurrency=1)
    async def assemble(stream):
        async for batch in event_batches(
            stream, ROWS_PROCESSED, settings.assembler_batch_size, settings.assembler_batch_wait_s
        ):
            await handlers.record_results(
                batch, store=store, blobs=blobs, producer=producer, public_base_url=settings.public_base_url
            )

    return app


def main() -> None:
    settings = Settings()
    configure_logging("assembler", settings.log)
    ensure_topics(settings.kafka)
    run_worker(build_app(settings), settings.log.level)


if __name__ == "__main__":
    main()
