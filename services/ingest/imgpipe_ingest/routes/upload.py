"""POST /api/upload/: the form read into one UploadOptions, then handlers.accept_upload."""

from typing import Annotated, cast

from fastapi import APIRouter, File, Form, Header, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from imgpipe_ingest import handlers
from imgpipe_ingest.auth import KeyedRoute
from imgpipe_ingest.csv_input import CsvRejected, Limits, submitted_url_problem
from imgpipe_ingest.deps import AcceptancesDep, Blobs, Keys, Owner, Policy, SettingsDep, Store
from imgpipe_ingest.envelope import ClientError, envelope, errors
from imgpipe_ingest.payloads import Uploaded, UploadPayload
from imgpipe_ingest.preset_defaults import PresetConflict, with_preset
from imgpipe_runtime.netpolicy import BlockedAddress, NetPolicy, check_url
from imgpipe_schemas import ImageOptions
from imgpipe_schemas.events import MAX_SIDE, Fit, Metadata, OutputFormat, PresetName, QualityMode

# 1–95 (leading zeros forgiven, as an integer field forgave them), or a quality mode.
QUALITY_PATTERN = r"^(?:0*(?:[1-9]|[1-8][0-9]|9[0-5])|auto(?::(?:eco|good|best))?)$"

# The API key is checked before the body is received (KeyedRoute).
router = APIRouter(route_class=KeyedRoute)
REJECTED = (
    "The CSV was rejected (payload: its problems), a form field is invalid (payload: the fields), "
    "or the webhook_url is refused"
)


@router.post(
    "/api/upload/",
    response_model=Uploaded,
    status_code=200,
    summary="Upload a products CSV",
    responses=errors(400, 401, 409, 413, 503, e400=REJECTED),
)
async def upload(
    settings: SettingsDep,
    owner: Owner,
    policy: Policy,
    store: Store,
    blobs: Blobs,
    acceptances: AcceptancesDep,
    keys: Keys,
    file: Annotated[UploadFile, File(description="CSV: S. No., Product Name, Input Image Urls")],
    webhook_url: Annotated[str | None, Form(description="Where to POST the signed completion webhook")] = None,
    quality: Annotated[
        str | None,
        Form(
            pattern=QUALITY_PATTERN,
            description="Encoder quality, 1–95 (default 50); or a perceptual quality mode, per image the lowest "
            "quality that still looks like the source: auto (= auto:good), auto:eco, auto:good, auto:best",
            examples=["50", "auto"],
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat | None,
        Form(
            alias="format",
            description="Output format (default jpeg); keep = the source's own; auto = per image the smallest of "
            "AVIF, WebP and JPEG at the quality mode's perceptual quality (auto:good unless quality says otherwise)",
        ),
    ] = None,
    max_width: Annotated[
        int | None, Form(ge=1, le=MAX_SIDE, description="Widest output in pixels; never upscaled")
    ] = None,
    max_height: Annotated[
        int | None, Form(ge=1, le=MAX_SIDE, description="Tallest output in pixels; never upscaled")
    ] = None,
    fit: Annotated[
        Fit | None,
        Form(description="contain (default): inside the box; pad: exactly the box; cover: fill it and crop"),
    ] = None,
    background: Annotated[
        str | None, Form(pattern=r"^[0-9a-fA-F]{6}$", description="pad's colour, RRGGBB hex (default ffffff)")
    ] = None,
    progressive: Annotated[bool | None, Form(description="JPEG output progressive (default true)")] = None,
    metadata: Annotated[
        Metadata | None,
        Form(description="strip (default; the ICC profile is kept), keep_copyright, keep (all but GPS)"),
    ] = None,
    keep_gps: Annotated[bool | None, Form(description="With metadata=keep, keep GPS positions too")] = None,
    preset: Annotated[
        PresetName | None,
        Form(
            description="A marketplace preset: its format and size defaults (any option given here overrides "
            "them) and its rules, each output checked against them (Image Checks in the output CSV)",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Same key and upload: the same request id; a different upload: 409. Scoped by API key.",
        ),
    ] = None,
) -> JSONResponse:
    if file.size is not None and file.size > settings.max_upload_bytes:
        raise ClientError(413, f"the file is larger than {settings.max_upload_bytes} bytes")
    fixed_quality, quality_mode = _quality(quality, settings.default_quality)
    chosen = {
        "max_width": max_width,
        "max_height": max_height,
        "fit": fit,
        "background": background,
        "progressive": progressive,
        "metadata": metadata,
        "keep_gps": keep_gps,
    }
    try:
        output_format, chosen = with_preset(preset, output_format, chosen)
    except PresetConflict as exc:
        raise ClientError(400, "invalid request", {"errors": [{"field": exc.field, "message": str(exc)}]}) from exc
    if output_format == "auto" and quality_mode is None:
        quality_mode = "auto:good"  # the formats are compared at equal perceptual quality
    chosen["quality_mode"] = quality_mode
    options = handlers.UploadOptions(
        quality=fixed_quality,
        output_format=output_format or "jpeg",
        image_options=_image_options(chosen),
        webhook_url=await _checked_webhook_url(webhook_url, policy),
        idempotency_key=idempotency_key or None,
        owner=owner,
    )
    limits = Limits(max_rows=settings.max_rows, max_urls_per_row=settings.max_urls_per_row)
    try:
        accepted = await handlers.accept_upload(
            file.file, options, limits=limits, store=store, blobs=blobs, keys=keys, lease_s=settings.accept_lease_s
        )
    except handlers.IdempotencyInProgress as exc:
        raise ClientError(409, "an upload with this Idempotency-Key is still being accepted; retry shortly") from exc
    except handlers.IdempotencyConflict as exc:
        raise ClientError(409, "this Idempotency-Key was already used for a different upload") from exc
    except CsvRejected as exc:
        problems = [{"row": p.row, "column": p.column, "message": p.message} for p in exc.problems]
        payload = {"errors": problems, "errors_total": exc.total}
        raise ClientError(400, f"the CSV was rejected: {exc.total} problem(s)", payload) from exc
    if accepted.request is not None:
        acceptances.start(accepted.request)  # its rows are stored and published after this answer
    payload = UploadPayload(request_id=accepted.request_id).model_dump(mode="json")
    if accepted.repeated:
        return envelope(200, "File already uploaded with this Idempotency-Key", payload)
    return envelope(200, "File uploaded successfully", payload)


def _quality(quality: str | None, default: int) -> tuple[int, QualityMode | None]:
    """The form's quality (which QUALITY_PATTERN admitted): a fixed quality, or a mode and the fixed quality
    that PNG outputs, which have no perceptual search, take instead."""
    if quality is None:
        return default, None
    if quality.startswith("auto"):
        return default, cast(QualityMode, "auto:good" if quality == "auto" else quality)
    return int(quality), None


def _image_options(chosen: dict) -> ImageOptions:
    """The options the form set, checked together (each field alone was checked by its declaration)."""
    try:
        return ImageOptions(**{name: value for name, value in chosen.items() if value is not None})
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]} for error in exc.errors()
        ]
        raise ClientError(400, "invalid request", {"errors": problems}) from exc


async def _checked_webhook_url(webhook_url: str | None, policy: NetPolicy) -> str | None:
    """The form's webhook_url, or None for none; refused while the uploader is still there to be told why."""
    webhook_url = (webhook_url or "").strip() or None
    if webhook_url:
        if reason := submitted_url_problem(webhook_url):
            raise ClientError(400, f"webhook_url: {reason}")
        try:
            await check_url(webhook_url, policy)
        except BlockedAddress as exc:
            raise ClientError(400, f"webhook_url: blocked_address: {exc}") from exc
    return webhook_url
