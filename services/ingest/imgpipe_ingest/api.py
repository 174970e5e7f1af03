"""The REST contract: the seed's paths and its {"status", "message", "payload"} envelope, wired together."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from imgpipe_bus import EventProducer
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.auth import ApiKeys
from imgpipe_ingest.body_limit import BodyLimit
from imgpipe_ingest.envelope import EXCEPTION_HANDLERS
from imgpipe_ingest.routes import files, health, requests, upload, webhook
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.blobs import open_blob_store
from imgpipe_runtime.documents import ensure_indexes
from imgpipe_runtime.mongo import connect
from imgpipe_runtime.netpolicy import NetPolicy

FORM_OVERHEAD_BYTES = 64 * 1024


def create_api(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="imgpipe",
        description="Bulk image compression: upload a CSV of product image URLs, get back compressed images.",
        version="1.0.0",
        lifespan=_adapters,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.settings = settings
    app.state.policy = NetPolicy.parse(settings.fetch_allow)
    app.state.api_keys = ApiKeys.parse(settings.api_keys)
    # The file's own limit plus room for the form's other fields and multipart framing.
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    for module in (upload, requests, files, webhook, health):
        app.include_router(module.router)
    return app


@asynccontextmanager
async def _adapters(app: FastAPI):
    """The adapters the routes' dependencies hand out, open while the app serves."""
    settings: Settings = app.state.settings
    db = connect(settings.mongo)
    await ensure_indexes(db)
    app.state.db = db
    app.state.store = RequestStore(db)
    app.state.blobs = open_blob_store(settings.blobs, db)
    app.state.keys = IdempotencyKeys(db, settings.idempotency_ttl_s, settings.idempotency_lease_s)
    app.state.producer = EventProducer(settings.kafka)
    try:
        yield
    finally:
        await app.state.producer.close()
        await db.client.close()
