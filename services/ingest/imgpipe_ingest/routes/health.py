"""GET /healthz: whether the broker and the database answer; the stack, the demo and compose wait on it."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imgpipe_bus import broker_reachable
from imgpipe_ingest.deps import Database, SettingsDep
from imgpipe_ingest.envelope import envelope
from imgpipe_ingest.payloads import Health, HealthPayload
from imgpipe_runtime.mongo import database_reachable

router = APIRouter()


@router.get(
    "/healthz",
    response_model=Health,
    summary="200 once Kafka and MongoDB are reachable",
    responses={503: {"model": Health, "description": "Kafka or MongoDB is unreachable (payload: which)"}},
)
async def healthz(settings: SettingsDep, db: Database) -> JSONResponse:
    kafka_ok, mongo_ok = await asyncio.gather(
        asyncio.to_thread(broker_reachable, settings.kafka), database_reachable(db)
    )
    checks = HealthPayload(kafka=kafka_ok, mongodb=mongo_ok)
    healthy = kafka_ok and mongo_ok
    return envelope(200 if healthy else 503, "ok" if healthy else "unhealthy", checks.model_dump(mode="json"))
