"""Wires the notifier: one faust agent over completed requests."""

import aiohttp
import faust
from imgpipe_bus import (
    EventProducer,
    agent_stage,
    create_app,
    ensure_topics,
    faust_topic,
    handle_each,
    run_worker,
)
from imgpipe_notifier import handlers
from imgpipe_notifier.adapters.deliveries import DeliveryLog
from imgpipe_notifier.adapters.webhook import WebhookSender
from imgpipe_notifier.settings import Settings
from imgpipe_runtime.logs import configure_logging
from imgpipe_runtime.mongo import OUTAGES, connect
from imgpipe_runtime.netpolicy import NetPolicy
from imgpipe_schemas.topics import REQUESTS_COMPLETED


def build_app(settings: Settings) -> faust.App:
    app = create_app("notifier", settings.kafka)
    db = connect(settings.mongo)
    deliveries = DeliveryLog(db)
    producer = EventProducer(settings.kafka)
    sender = WebhookSender(
        secret=settings.webhook_secret,
        timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_s),
        policy=NetPolicy.parse(settings.fetch_allow),
    )

    async def close() -> None:
        await sender.close()
        await producer.close()
        await db.client.close()

    app.close_on_shutdown(close)

    async def handle(completed) -> None:
        await handlers.notify(
            completed,
            sender=sender,
            deliveries=deliveries,
            default_url=settings.default_webhook_url,
            schedule_s=settings.webhook_retry_schedule_s,
        )

    stage = agent_stage(app, REQUESTS_COMPLETED, producer, OUTAGES)

    @app.agent(faust_topic(app, REQUESTS_COMPLETED), concurrency=settings.notifier_concurrency)
    async def deliver(stream):
        await handle_each(stream, stage, handle)

    return app


def main() -> None:
    settings = Settings()
    configure_logging("notifier", settings.log)
    ensure_topics(settings.kafka)
    run_worker(build_app(settings), settings.log.level)


if __name__ == "__main__":
    main()
