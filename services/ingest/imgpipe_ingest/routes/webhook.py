"""POST /api/webhook/: a sample receiver of imgpipe's own signed webhooks, for trying the pipeline out."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imgpipe_ingest.deps import SettingsDep
from imgpipe_ingest.envelope import ClientError, envelope, errors
from imgpipe_ingest.payloads import Received
from imgpipe_runtime.webhooks import WebhookVerificationError, verify

log = logging.getLogger(__name__)
router = APIRouter()


@router.post(
    "/api/webhook/",
    response_model=Received,
    summary="Sample webhook receiver: verifies and logs",
    responses=errors(401, 413, e401="The webhook's signature is missing, wrong or out of date"),
)
async def webhook(request: Request, settings: SettingsDep) -> JSONResponse:
    body = await request.body()
    try:
        payload = verify(settings.webhook_secret, body, dict(request.headers))
    except WebhookVerificationError as exc:
        raise ClientError(401, f"webhook signature rejected: {exc}") from exc
    log.info("webhook received: %s", payload)
    return envelope(200, "webhook received")
