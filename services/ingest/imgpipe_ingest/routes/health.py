"""GET /healthz: whether the broker and the database answer; the stack, the demo and compose wait on it."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imgpipe_bus import broker_reachable
from imgpipe_ingest.deps import Database, SettingsDep
from imgpipe_ingest.envelope import Envelope, envelope
from imgpipe_runtime.mongo import database_reachable

router = APIRouter()


@router.get("/healthz", response_model=Envelope, summary="200 once Kafka and MongoDB are reachable")
async def healthz(settings: SettingsDep, db: Database) -> JSONResponse:
    kafka_ok, mongo_ok = await asyncio.gather(
        asyncio.to_thread(broker_reachable, settings.kafka), database_reachable(db)
    )
    checks = {"kafka": kafka_ok, "mongodb": mongo_ok}
    return envelope(200 if all(checks.values()) else 503, "ok" if all(checks.values()) else "unhealthy", checks)
