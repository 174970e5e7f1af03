"""The REST contract: the seed's paths and its {"status", "message", "payload"} envelope, wired together."""

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from imgpipe_bus import EventProducer
from imgpipe_ingest import metrics
from imgpipe_ingest.acceptance import Acceptances
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.auth import ApiKeys
from imgpipe_ingest.body_limit import BodyLimit
from imgpipe_ingest.docs import serve_docs
from imgpipe_ingest.envelope import EXCEPTION_HANDLERS
from imgpipe_ingest.routes import files, health, pages, requests, upload, webhook
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.blobs import open_blob_store
from imgpipe_runtime.documents import ensure_indexes
from imgpipe_runtime.mongo import connect
from imgpipe_runtime.netpolicy import NetPolicy

DESCRIPTION = (
    "Bulk image compression: upload a CSV of product image URLs, get back compressed images. Every JSON "
    "answer is the envelope {status, message, payload}. While the server has API keys (IMGPIPE_API_KEYS), "
    "upload, status, rows and input CSVs need one, as `Authorization: Bearer <key>` or `X-API-Key: <key>`, "
    "and a key sees only the requests made with it. A person follows a request at /requests/{request_id}."
)
FORM_OVERHEAD_BYTES = 64 * 1024
STATIC = Path(__file__).parent / "static"
# FastAPI's default answer to invalid input, which this app never sends (envelope: 400 instead).
UNSENT = ("422",)
UNSENT_SCHEMAS = ("HTTPValidationError", "ValidationError")


def create_api(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="imgpipe",
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=_adapters,
        exception_handlers=EXCEPTION_HANDLERS,
        docs_url=None,  # served by docs.serve_docs, from ingest's own files
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.policy = NetPolicy.parse(settings.fetch_allow)
    app.state.api_keys = ApiKeys.parse(settings.api_keys)
    # The file's own limit plus room for the form's other fields and multipart framing.
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    for module in (upload, requests, files, webhook, health, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    serve_docs(app)
    _document_only_what_is_sent(app, keyed=bool(app.state.api_keys.keys), redirects=settings.blobs.store == "s3")
    metrics.instrument(app)
    return app


def _document_only_what_is_sent(app: FastAPI, keyed: bool, redirects: bool) -> None:
    """FastAPI documents a 422 for every route with parameters; the app answers invalid input with 400
    (envelope.errors documents each route's real statuses), so the 422s and their schemas are taken out.
    While no API keys are configured nothing needs one: the routes that take a key document no security
    requirement and no 401 (the schemes stay declared, for the deployments that set keys). Only a store
    in a bucket (S3) redirects a file to it: the 307 is documented there alone."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # kept by the app as its openapi_schema: changed in place, built once
        for operations in schema["paths"].values():
            for operation in operations.values():
                for code in UNSENT if redirects else (*UNSENT, "307"):
                    operation["responses"].pop(code, None)
                if not keyed and "security" in operation:
                    operation["security"] = []
                    operation["responses"].pop("401", None)
        for name in UNSENT_SCHEMAS:
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the schema


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
    app.state.acceptances = Acceptances(
        store=app.state.store,
        blobs=app.state.blobs,
        producer=app.state.producer,
        lease_s=settings.accept_lease_s,
        resume_every_s=settings.accept_resume_every_s,
        chunk_rows=settings.accept_chunk_rows,
    )
    app.state.acceptances.start_resuming()
    try:
        yield
    finally:
        await app.state.acceptances.close()
        await app.state.producer.close()
        await db.client.close()
