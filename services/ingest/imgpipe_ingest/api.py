"""The REST contract: the seed's paths and its {"status", "message", "payload"} envelope."""

import asyncio
import hmac
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from confluent_kafka import KafkaException
from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException

from imgpipe_bus import EventProducer, broker_reachable
from imgpipe_ingest import handlers
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.body_limit import BodyLimit
from imgpipe_ingest.csv_input import CsvRejected, Limits, url_problem
from imgpipe_ingest.envelope import ClientError, Envelope, envelope
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.blobs import BlobStore
from imgpipe_runtime.documents import ensure_indexes
from imgpipe_runtime.mongo import connect, database_reachable
from imgpipe_runtime.netpolicy import BlockedAddress, NetPolicy, check_url
from imgpipe_runtime.webhooks import WebhookVerificationError, verify

log = logging.getLogger(__name__)
FORM_OVERHEAD_BYTES = 64 * 1024


def create_api(settings: Settings) -> FastAPI:
    policy = NetPolicy.parse(settings.fetch_allow)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        db = connect(settings.mongo)
        await ensure_indexes(db)
        app.state.db = db
        app.state.store = RequestStore(db)
        app.state.blobs = BlobStore(db)
        app.state.keys = IdempotencyKeys(db)
        app.state.producer = EventProducer(settings.kafka)
        try:
            yield
        finally:
            await app.state.producer.close()
            await db.client.close()

    app = FastAPI(
        title="imgpipe",
        description="Bulk image compression: upload a CSV of product image URLs, get back compressed images.",
        version="1.0.0",
        lifespan=lifespan,
    )
    # The file's own limit plus room for the form's other fields and multipart framing.
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)

    def store(request: Request) -> RequestStore:
        return request.app.state.store

    def blobs(request: Request) -> BlobStore:
        return request.app.state.blobs

    def producer(request: Request) -> EventProducer:
        return request.app.state.producer

    api_keys = [key.strip() for key in settings.api_keys.split(",") if key.strip()]

    def authorised(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        """With IMGPIPE_API_KEYS set: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
        if not api_keys:
            return
        offered = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
        if not any(hmac.compare_digest(offered.encode(), key.encode()) for key in api_keys):
            raise ClientError(401, "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>")

    Store = Annotated[RequestStore, Depends(store)]
    Blobs = Annotated[BlobStore, Depends(blobs)]
    Producer = Annotated[EventProducer, Depends(producer)]

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> JSONResponse:
        return envelope(exc.code, exc.message, exc.payload)

    @app.exception_handler(ConnectionFailure)
    @app.exception_handler(KafkaException)
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("answering 503: %r", exc)
        response = envelope(503, "the service is briefly unavailable (database or broker); retry shortly")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"][1:]), "message": error["msg"]}
            for error in exc.errors()
        ]
        return envelope(400, "invalid request", {"errors": problems})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return envelope(exc.status_code, str(exc.detail))

    @app.post(
        "/api/upload/",
        response_model=Envelope,
        status_code=200,
        summary="Upload a products CSV",
        dependencies=[Depends(authorised)],
    )
    async def upload(
        request: Request,
        store: Store,
        blobs: Blobs,
        producer: Producer,
        file: Annotated[UploadFile, File(description="CSV: S. No., Product Name, Input Image Urls")],
        webhook_url: Annotated[str | None, Form(description="Where to POST the signed completion webhook")] = None,
        quality: Annotated[int | None, Form(ge=1, le=95, description="Encoder quality, 1–95 (default 50)")] = None,
        output_format: Annotated[
            Literal["jpeg", "webp", "png", "keep"] | None,
            Form(alias="format", description="Output format (default jpeg); keep = the source's own"),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=200, description="Same key and upload: the same request id; a different upload: 409"),
        ] = None,
    ) -> JSONResponse:
        if file.size is not None and file.size > settings.max_upload_bytes:
            raise ClientError(413, f"the file is larger than {settings.max_upload_bytes} bytes")
        data = file.file
        webhook_url = (webhook_url or "").strip() or None
        if webhook_url:
            if reason := url_problem(webhook_url):
                raise ClientError(400, f"webhook_url: {reason}")
            try:
                await check_url(webhook_url, policy)
            except BlockedAddress as exc:
                raise ClientError(400, f"webhook_url: blocked_address: {exc}") from exc
        options = {
            "webhook_url": webhook_url,
            "quality": quality or settings.default_quality,
            "output_format": output_format or "jpeg",
        }
        accept = {
            "limits": Limits(max_rows=settings.max_rows, max_urls_per_row=settings.max_urls_per_row),
            "store": store,
            "blobs": blobs,
            "producer": producer,
        }
        try:
            if idempotency_key:
                request_id, new = await handlers.accept_upload_once(
                    idempotency_key, data, options=options, keys=request.app.state.keys, **accept
                )
                if not new:
                    return envelope(200, "File already uploaded with this Idempotency-Key", {"request_id": request_id})
            else:
                request_id = await handlers.accept_upload(data, **options, **accept)
        except handlers.IdempotencyConflict as exc:
            raise ClientError(409, "this Idempotency-Key was already used for a different upload") from exc
        except CsvRejected as exc:
            problems = [{"row": p.row, "column": p.column, "message": p.message} for p in exc.problems]
            raise ClientError(400, f"the CSV was rejected: {len(problems)} problem(s)", {"errors": problems}) from exc
        return envelope(200, "File uploaded successfully", {"request_id": request_id})

    @app.get(
        "/api/output/",
        response_model=Envelope,
        summary="Status, progress and output CSV URL of a request",
        dependencies=[Depends(authorised)],
    )
    async def output(store: Store, request_id: Annotated[str, Query()]) -> JSONResponse:
        request_id = _parse_request_id(request_id)
        try:
            status = await handlers.request_status(request_id, store=store, public_base_url=settings.public_base_url)
        except handlers.RequestNotFound as exc:
            raise ClientError(404, f"no request with id {request_id}") from exc
        return envelope(
            200,
            "",
            {
                "request_id": request_id,
                "status": status.status,
                "output_file_url": status.output_file_url,
                "progress": status.progress.model_dump(),
                "webhooks": status.webhooks,
            },
        )

    @app.get("/api/files/{name:path}", summary="An output CSV or image", response_class=Response)
    async def files(name: str, blobs: Blobs) -> Response:
        blob = await blobs.open(name)
        if blob is None:
            raise ClientError(404, f"no file named {name}")
        headers = {"Content-Length": str(blob.length)}
        if "/images/" in name:
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return StreamingResponse(blob.chunks(), media_type=blob.content_type, headers=headers)

    @app.post("/api/webhook/", response_model=Envelope, summary="Sample webhook receiver: verifies and logs")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            payload = verify(settings.webhook_secret, body, dict(request.headers))
        except WebhookVerificationError as exc:
            raise ClientError(401, f"webhook signature rejected: {exc}") from exc
        log.info("webhook received: %s", payload)
        return envelope(200, "webhook received")

    @app.get("/healthz", response_model=Envelope, summary="200 once Kafka and MongoDB are reachable")
    async def healthz(request: Request) -> JSONResponse:
        kafka_ok, mongo_ok = await asyncio.gather(
            asyncio.to_thread(broker_reachable, settings.kafka), database_reachable(request.app.state.db)
        )
        checks = {"kafka": kafka_ok, "mongodb": mongo_ok}
        return envelope(200 if all(checks.values()) else 503, "ok" if all(checks.values()) else "unhealthy", checks)

    return app


def _parse_request_id(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise ClientError(400, f"request_id {value[:64]!r} is not a UUID") from exc
