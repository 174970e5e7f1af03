"""Wires the notifier: one faust agent over completed requests."""

import aiohttp
import faust

from imgpipe_bus import create_app, ensure_topics, events, faust_topic, run_worker
from imgpipe_notifier import handlers
from imgpipe_notifier.adapters.webhook import WebhookSender
from imgpipe_notifier.settings import Settings
from imgpipe_runtime.logs import configure_logging
from imgpipe_schemas.topics import REQUESTS_COMPLETED


def build_app(settings: Settings) -> faust.App:
    app = create_app("notifier", settings.kafka)
    sender = WebhookSender(
        secret=settings.webhook_secret,
        timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_s),
        attempts=settings.webhook_attempts,
        backoff_s=settings.webhook_backoff_s,
    )

    app.close_on_shutdown(sender.close)

    @app.agent(faust_topic(app, REQUESTS_COMPLETED), concurrency=settings.notifier_concurrency)
    async def deliver(stream):
        async for completed in events(stream, REQUESTS_COMPLETED):
            await handlers.notify(completed, sender=sender, default_url=settings.default_webhook_url)

    return app


def main() -> None:
    settings = Settings()
    configure_logging("notifier", settings.log)
    ensure_topics(settings.kafka)
    run_worker(build_app(settings), settings.log.level)


if __name__ == "__main__":
    main()
