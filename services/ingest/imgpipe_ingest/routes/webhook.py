"""POST /api/webhook/: a sample receiver of imgpipe's own signed webhooks, for trying the pipeline out."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imgpipe_ingest.deps import SettingsDep
from imgpipe_ingest.envelope import ClientError, Envelope, envelope
from imgpipe_runtime.webhooks import WebhookVerificationError, verify

log = logging.getLogger(__name__)
router = APIRouter()


@router.post("/api/webhook/", response_model=Envelope, summary="Sample webhook receiver: verifies and logs")
async def webhook(request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    try:
        payload = verify(settings.webhook_secret, body, dict(request.headers))
    except WebhookVerificationError as exc:
        raise ClientError(401, f"webhook signature rejected: {exc}") from exc
    log.info("webhook received: %s", payload)
    return envelope(200, "webhook received")
