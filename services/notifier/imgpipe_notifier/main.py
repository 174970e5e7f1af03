"""Wires the notifier: one faust agent over completed requests (each delivery's first attempt) and a timer
that makes the retries that are due."""

import functools
import logging

import aiohttp
from confluent_kafka import KafkaException
from pymongo.errors import PyMongoError

from imgpipe_bus import (
    DeadLetters,
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
from imgpipe_notifier import handlers
from imgpipe_notifier.adapters.deliveries import DeliveryLog
from imgpipe_notifier.adapters.webhook import WebhookSender
from imgpipe_notifier.handlers import Schedule
from imgpipe_notifier.settings import Settings
from imgpipe_runtime.documents import ensure_indexes_when_up
from imgpipe_runtime.logs import about_request
from imgpipe_runtime.mongo import connect
from imgpipe_runtime.netpolicy import NetPolicy
from imgpipe_runtime.outages import is_outage
from imgpipe_schemas.topics import REQUESTS_COMPLETED

log = logging.getLogger(__name__)

# /metrics and /healthz, unless IMGPIPE_METRICS_PORT says otherwise.
METRICS_PORT = 9103


# Every database error is waited out, not only a lost connection: the notifier writes only documents it
# built itself, so a write refused (no primary, a write concern not met, a full disk) is never the
# completion's own fault, and dead-lettering it would lose its webhook.
def is_notifier_outage(exc: BaseException) -> bool:
    return isinstance(exc, PyMongoError) or is_outage(exc)


def build_app(settings: Settings, health: HealthSettings) -> ServiceApp:
    app = create_app("notifier", settings.kafka)
    db = connect(settings.mongo)
    producer = EventProducer(settings.kafka)
    sender = WebhookSender(
        secret=settings.webhook_secret,
        # sock_connect, not connect: aiohttp's connect also counts the wait for a free connection.
        timeout=aiohttp.ClientTimeout(
            total=settings.webhook_timeout_s, sock_connect=settings.webhook_connect_timeout_s
        ),
        policy=NetPolicy.parse(settings.fetch_allow),
        connections_per_host=settings.webhook_connections_per_host,
    )
    adapters = handlers.Adapters(
        deliveries=DeliveryLog(db),
        sender=sender,
        dead_letters=DeadLetters(producer, group=app.conf.id),
        schedule=Schedule(tuple(settings.webhook_retry_schedule_s), lease_s=2 * settings.webhook_timeout_s + 5),
        default_url=settings.default_webhook_url,
    )

    async def close() -> None:
        await sender.close()
        await producer.close()
        await db.client.close()

    app.close_on_shutdown(close)

    @app.task
    async def create_indexes() -> None:
        """The shared collections' indexes, once at start-up; the database may still be starting."""
        await ensure_indexes_when_up(db)

    stage = agent_stage(app, REQUESTS_COMPLETED, producer, is_notifier_outage)

    @app.agent(faust_topic(app, REQUESTS_COMPLETED), concurrency=settings.notifier_concurrency)
    async def deliver(stream):
        await handle_each(
            stream,
            stage,
            functools.partial(handlers.accept, adapters=adapters),
            about=lambda event: about_request(event.request_id),
        )

    @app.timer(settings.webhook_poll_s)
    async def retry_due() -> None:
        try:
            await handlers.deliver_due(adapters, concurrency=settings.notifier_concurrency)
        except Exception as exc:
            if not (isinstance(exc, KafkaException) or is_notifier_outage(exc)):
                raise
            log.warning("webhook retries skipped this round: %r", exc)

    serve_health(app, health, default_port=METRICS_PORT, ping=lambda: db.command("ping"))
    return app


def main() -> None:
    run_service("notifier", Settings, build_app)


if __name__ == "__main__":
    main()
