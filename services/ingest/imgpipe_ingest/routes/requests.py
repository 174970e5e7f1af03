"""GET /api/output/: a request's status, progress, output CSV URL and webhook deliveries."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from imgpipe_ingest import handlers
from imgpipe_ingest.auth import KeyedRoute
from imgpipe_ingest.deps import Owner, SettingsDep, Store
from imgpipe_ingest.envelope import ClientError, Envelope, envelope

router = APIRouter(route_class=KeyedRoute)


@router.get("/api/output/", response_model=Envelope, summary="Status, progress and output CSV URL of a request")
async def output(
    settings: SettingsDep, store: Store, owner: Owner, request_id: Annotated[str, Query()]
) -> JSONResponse:
    """A request made with another API key is 404, as an unknown one is."""
    request_id = _parse_request_id(request_id)
    try:
        status = await handlers.request_status(
            request_id, owner=owner, store=store, public_base_url=settings.public_base_url
        )
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


def _parse_request_id(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise ClientError(400, f"request_id {value[:64]!r} is not a UUID") from exc
