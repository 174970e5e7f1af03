"""GET /api/output/: a request's status, progress, output CSV URL and webhook deliveries; GET /api/rows/: its
rows a page at a time, with each image's outcome (what the status page shows). Both see what the caller's API
key may see: a request made with another key is 404, as an unknown one is."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from imgpipe_ingest import handlers
from imgpipe_ingest.auth import KeyedRoute
from imgpipe_ingest.deps import Blobs, Owner, SettingsDep, Store
from imgpipe_ingest.envelope import ClientError, envelope, errors
from imgpipe_ingest.payloads import RowOutcome, RowsAnswer, RowsPayload, StatusAnswer, StatusPayload

router = APIRouter(route_class=KeyedRoute)

MAX_ROWS_PER_PAGE = 100
NOT_A_UUID = "request_id is missing or not a UUID"
UNKNOWN = "no request with this id, or it was made with another API key"


@router.get(
    "/api/output/",
    response_model=StatusAnswer,
    summary="Status, progress and output CSV URL of a request",
    responses=errors(400, 401, 404, 410, 503, e400=NOT_A_UUID, e404=UNKNOWN),
)
async def output(
    settings: SettingsDep, store: Store, blobs: Blobs, owner: Owner, request_id: Annotated[str, Query()]
) -> JSONResponse:
    request_id = _parse_request_id(request_id)
    try:
        status = await handlers.request_status(
            request_id, owner=owner, store=store, blobs=blobs, public_base_url=settings.public_base_url
        )
    except handlers.RequestNotFound as exc:
        raise ClientError(404, f"no request with id {request_id}") from exc
    except handlers.RequestExpired as exc:
        raise ClientError(410, str(exc)) from exc
    payload = StatusPayload(
        request_id=request_id,
        status=status.status,
        output_file_url=status.output_file_url,
        progress=status.progress,
        rows_accepted=status.rows_accepted,
        webhooks=status.webhooks,
    )
    return envelope(200, "", payload.model_dump(mode="json"))


@router.get(
    "/api/rows/",
    response_model=RowsAnswer,
    summary="A page of a request's rows, with each image's output URL or error",
    responses=errors(400, 401, 404, 410, 503, e400=f"{NOT_A_UUID}, or offset / limit out of range", e404=UNKNOWN),
)
async def rows(
    settings: SettingsDep,
    store: Store,
    owner: Owner,
    request_id: Annotated[str, Query()],
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Rows to pass over")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS_PER_PAGE, description="Rows in the page")] = 50,
    failed: Annotated[bool, Query(description="Only the rows with a failed image")] = False,
) -> JSONResponse:
    request_id = _parse_request_id(request_id)
    try:
        page = await handlers.request_rows(
            request_id,
            owner=owner,
            store=store,
            public_base_url=settings.public_base_url,
            offset=offset,
            limit=limit,
            failed_only=failed,
        )
    except handlers.RequestNotFound as exc:
        raise ClientError(404, f"no request with id {request_id}") from exc
    except handlers.RequestExpired as exc:
        raise ClientError(410, str(exc)) from exc
    payload = RowsPayload(
        request_id=request_id,
        input_file_url=page.input_file_url,
        total=page.total,
        offset=offset,
        limit=limit,
        more=page.more,
        rows=[RowOutcome.model_validate(row) for row in page.rows],
    )
    return envelope(200, "", payload.model_dump(mode="json"))


def _parse_request_id(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise ClientError(400, f"request_id {value[:64]!r} is not a UUID") from exc
