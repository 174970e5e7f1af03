"""Wires the assembler: faust agents over the row results (and the requests and rows that direct producers
send), batched into MongoDB, and the timers of the reconciler and of retention."""

import asyncio
import functools
import logging
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaException
from prometheus_client import Counter

from imgpipe_assembler import handlers, reconciler
from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.adapters.rows_topic import RowsTopic
from imgpipe_assembler.reconciler import ReconcilePolicy
from imgpipe_assembler.settings import Settings
from imgpipe_bus import (
    EventProducer,
    HealthSettings,
    ServiceApp,
    Stage,
    agent_stage,
    create_app,
    ensure_topics,
    faust_topic,
    handle_batches,
    run_service,
    serve_health,
)
from imgpipe_runtime.blobs import open_blob_store
from imgpipe_runtime.documents import ensure_indexes_when_up
from imgpipe_runtime.mongo import OUTAGES, connect
from imgpipe_runtime.outages import is_outage
from imgpipe_runtime.retention import Pruned, expire_claims, prune
from imgpipe_schemas.topics import ASSEMBLER_GROUP, REQUESTS_ACCEPTED, ROWS_PROCESSED, ROWS_SUBMITTED

log = logging.getLogger(__name__)

# /metrics and /healthz, unless IMGPIPE_METRICS_PORT says otherwise.
METRICS_PORT = 9102
RECONCILER_PASSES = Counter(
    "imgpipe_reconciler_passes", "Reconciler passes this assembler ran (one assembler of the group runs them)."
)


def build_app(settings: Settings, health: HealthSettings) -> ServiceApp:
    app = create_app(ASSEMBLER_GROUP, settings.kafka)
    db = connect(settings.mongo)
    store = ProgressStore(db)
    blobs = open_blob_store(settings.blobs, db)
    producer = EventProducer(settings.kafka)

    async def close() -> None:
        await producer.close()
        await db.client.close()

    app.close_on_shutdown(close)

    @app.task
    async def create_indexes() -> None:
        """The shared collections' indexes, once at start-up; the database may still be starting."""
        await ensure_indexes_when_up(db)

    adapters = handlers.Adapters(store=store, blobs=blobs, producer=producer, public_base_url=settings.public_base_url)

    def in_batches(stream, stage: Stage, handler, with_letters: bool = False):
        return handle_batches(
            stream,
            stage,
            functools.partial(handler, adapters=adapters),
            settings.assembler_batch_size,
            settings.assembler_batch_wait_s,
            with_letters=with_letters,
        )

    stage = agent_stage(app, ROWS_PROCESSED, producer, OUTAGES)
    accepted_stage = agent_stage(app, REQUESTS_ACCEPTED, producer, OUTAGES)
    # The image worker owns the rows topic; the assembler reads it only to learn rows produced straight to Kafka.
    submitted_stage = agent_stage(app, ROWS_SUBMITTED, producer, OUTAGES, owns_topic=False)

    policy = ReconcilePolicy(
        settings.reconcile_stall_s, settings.reconcile_max_rounds, webhook_by_default=bool(settings.default_webhook_url)
    )
    rows_topic = RowsTopic(settings.kafka)

    def leading() -> bool:
        """The reconciler and the retention pass run on one assembler of the group, however many run: the
        one that holds partition 0 of the results topic."""
        return app.holds(ROWS_PROCESSED, 0)

    @app.timer(settings.reconcile_interval_s)
    async def reconcile_stalled() -> None:
        if not leading():
            return
        RECONCILER_PASSES.inc()
        try:
            # The embedded broker forgets its topics when it restarts.
            await asyncio.to_thread(ensure_topics, settings.kafka, 5.0)
            counts = await reconciler.reconcile(adapters, rows_topic, policy=policy)
        except Exception as exc:
            if not (isinstance(exc, KafkaException) or is_outage(exc)):
                raise
            log.warning("reconciler pass skipped: %r", exc)
            return
        if any(count for outcome, count in counts.items() if outcome != "waiting"):
            log.info("reconciler pass: %s", counts)

    @app.timer(settings.retention_interval_s)
    async def expire_old_requests() -> None:
        """Expired Idempotency-Key claims go whatever the retention; requests only with one."""
        if not leading():
            return
        try:
            if settings.retention_days:
                pruned = await prune(db, blobs, datetime.now(UTC) - timedelta(days=settings.retention_days))
            else:
                pruned = Pruned(idempotency_keys=await expire_claims(db, datetime.now(UTC)))
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("retention pass skipped: %r", exc)
            return
        if pruned.requests or pruned.tombstones or pruned.idempotency_keys:
            log.info(
                "retention: %d request(s) expired, %d tombstone(s) and %d Idempotency-Key claim(s) deleted",
                pruned.requests,
                pruned.tombstones,
                pruned.idempotency_keys,
            )

    # One actor: results of a request share a partition, so a request is assembled by one actor at a time.
    @app.agent(faust_topic(app, ROWS_PROCESSED), concurrency=1)
    async def assemble(stream):
        await in_batches(stream, stage, handlers.record_results)

    @app.agent(faust_topic(app, REQUESTS_ACCEPTED), concurrency=1)
    async def receive_requests(stream):
        await in_batches(stream, accepted_stage, handlers.register_requests)

    @app.agent(faust_topic(app, ROWS_SUBMITTED), concurrency=1)
    async def receive_rows(stream):
        await in_batches(stream, submitted_stage, handlers.register_rows, with_letters=True)

    serve_health(app, health, default_port=METRICS_PORT, ping=lambda: db.command("ping"))
    return app


def main() -> None:
    run_service("assembler", Settings, build_app)


if __name__ == "__main__":
    main()
