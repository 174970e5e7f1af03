"""What ingest decides. Each handler takes its adapters as arguments."""

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from imgpipe_ingest.csv_input import CsvRejected, Limits, check_text, validate_csv
from imgpipe_ingest.ports import IdempotencyClaims, Requests
from imgpipe_runtime.blobs import BlobStore, blob_url, file_url, input_csv_name, is_output_csv_name
from imgpipe_runtime.documents import stored_options, visible_to
from imgpipe_runtime.logs import about_request
from imgpipe_runtime.retention import EXPIRED_AT, is_tombstone
from imgpipe_schemas import ImageOptions, Progress
from imgpipe_schemas.events import OutputFormat

log = logging.getLogger(__name__)


class RequestNotFound(LookupError):
    pass


class RequestExpired(LookupError):
    """The request existed, but its retention period ran out: its rows and files were deleted."""

    def __init__(self, request_id: str, tombstone: dict) -> None:
        finished, expired = tombstone.get("finished_at"), tombstone[EXPIRED_AT]
        super().__init__(
            f"request {request_id} finished on {finished:%Y-%m-%d} and expired on {expired:%Y-%m-%d}: "
            "its status, rows and files were deleted after the retention period"
            if finished
            else f"request {request_id} expired on {expired:%Y-%m-%d}: its rows and files were deleted"
        )


async def visible_request(request_id: str, *, owner: str | None, store: Requests) -> dict:
    """The request, for a caller that may see it: RequestNotFound for one that does not exist or that the
    owner may not see (another key learns nothing, not even that the id is taken), RequestExpired for one
    whose retention ran out."""
    request = await store.get(request_id)
    if request is None or not visible_to(request, owner):
        raise RequestNotFound(request_id)
    if is_tombstone(request):
        raise RequestExpired(request_id, request)
    return request


@dataclass(frozen=True)
class StatusReport:
    """What the status API shows of a request."""

    status: str
    output_file_url: str | None
    progress: Progress
    rows_accepted: int
    webhooks: list[dict]


@dataclass(frozen=True)
class UploadOptions:
    """What an upload asks for besides its file, the service's defaults already applied, and who asks:
    ``owner`` (see imgpipe_ingest.auth), None while no API keys are configured."""

    quality: int
    output_format: OutputFormat
    image_options: ImageOptions = ImageOptions()
    webhook_url: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class Accepted:
    """``repeated``: an earlier upload under the same Idempotency-Key was accepted; nothing new was.
    ``request``: the request stored, whose rows are yet to be accepted."""

    request_id: str
    repeated: bool = False
    request: dict | None = None


class IdempotencyInProgress(Exception):
    """An upload with this Idempotency-Key is still being accepted."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different upload."""


def upload_digest(file_digest: str, options: UploadOptions) -> str:
    """What an Idempotency-Key is claimed with: the file and every option but the key itself, in the form
    keys were always claimed with, so that a key claimed by an earlier version still matches its upload.
    The owner is not part of it: it scopes the key itself (adapters.idempotency.IdempotencyKeys)."""
    chosen: dict[str, object] = {
        "webhook_url": options.webhook_url,
        "quality": options.quality,
        "output_format": options.output_format,
    }
    if shaping := stored_options(options.image_options):
        chosen["image_options"] = shaping
    return hashlib.sha256((file_digest + json.dumps(chosen, sort_keys=True)).encode()).hexdigest()


async def accept_upload(
    source: BinaryIO,
    options: UploadOptions,
    *,
    limits: Limits,
    store: Requests,
    blobs: BlobStore,
    keys: IdempotencyClaims,
    lease_s: float,
) -> Accepted:
    """Validates the whole CSV and stores it with its request, PENDING: the upload is then safe, and its
    rows are stored and published in the background (acceptance.accept_rows). Raises CsvRejected.

    Under an Idempotency-Key the same key and upload give the same request id (``repeated``), and the same key
    with a different upload raises IdempotencyConflict; a rejected upload leaves its key unclaimed."""
    file_digest = await asyncio.to_thread(check_text, source)
    request_id, key = str(uuid.uuid4()), options.idempotency_key
    if key is not None:
        digest = upload_digest(file_digest, options)
        claim = await keys.claim(key, digest, request_id, owner=options.owner)
        if claim["digest"] != digest:
            raise IdempotencyConflict(key)
        if claim["request_id"] != request_id:
            if not claim.get("bound", True):
                raise IdempotencyInProgress(key)
            return Accepted(claim["request_id"], repeated=True)

    with about_request(request_id):
        try:
            async with _renewing(keys, key, request_id, options.owner):
                request = await _store(
                    source, request_id, options, limits=limits, store=store, blobs=blobs, lease_s=lease_s
                )
        except CsvRejected:
            if key is not None:  # refused before anything was stored
                await keys.release(key, request_id, owner=options.owner)
            raise
        except BaseException:
            if key is not None:
                await _release_unless_stored(keys, store, key, request_id, options.owner)
            raise
        # The request exists: from here on the key names it, whatever fails next; unless the claim was
        # taken over meanwhile, when the other upload answers for the key and this request goes.
        if key is not None and not await keys.bind(key, request_id, owner=options.owner):
            log.warning("request %s withdrawn: its Idempotency-Key was taken over while it was stored", request_id)
            await store.delete_request(request_id)
            await blobs.delete_prefix(f"{request_id}/")
            raise IdempotencyInProgress(key)
    log.info("stored request %s: %d rows, %d images", request_id, request["rows_total"], request["images_total"])
    return Accepted(request_id, request=request)


@contextlib.asynccontextmanager
async def _renewing(keys: IdempotencyClaims, key: str | None, request_id: str, owner: str | None):
    """Keeps the upload's claim of ``key`` its own while the block stores it, however long that takes."""
    if key is None:
        yield
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(keys.lease_s / 3)
            with contextlib.suppress(Exception):  # a missed renewal only shortens the lease
                await keys.renew(key, request_id, owner=owner)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _release_unless_stored(
    keys: IdempotencyClaims, store: Requests, key: str, request_id: str, owner: str | None
) -> None:
    """After a failure, the key is freed only if the request is surely not stored: an insert that failed
    ambiguously (the connection lost after the write) may have stored it, and then the key names it.
    Unsure (the database unreachable), the key is kept: its lease runs out, and the next claim looks."""
    try:
        stored = await store.get(request_id) is not None
        if stored:
            await keys.bind(key, request_id, owner=owner)
        else:
            await keys.release(key, request_id, owner=owner)
    except Exception as exc:  # noqa: BLE001 - the upload's own failure is what the client is told
        log.warning("Idempotency-Key of request %s left to its lease: %r", request_id, exc)


async def _store(
    source: BinaryIO,
    request_id: str,
    options: UploadOptions,
    *,
    limits: Limits,
    store: Requests,
    blobs: BlobStore,
    lease_s: float,
) -> dict:
    """The file, which passed check_text, is validated a record at a time and stored whole; then the
    request, whose acceptance is leased to this ingest."""
    summary = await asyncio.to_thread(validate_csv, source, limits)
    input_file = input_csv_name(request_id)
    source.seek(0)
    await blobs.put(input_file, source, "text/csv")
    return await store.insert_request(
        request_id,
        summary,
        input_file=input_file,
        webhook_url=options.webhook_url,
        quality=options.quality,
        output_format=options.output_format,
        image_options=options.image_options,
        owner=options.owner,
        accept_lease_until=datetime.now(UTC) + timedelta(seconds=lease_s),
    )


async def request_status(
    request_id: str, *, owner: str | None, store: Requests, blobs: BlobStore, public_base_url: str
) -> StatusReport:
    """Raises as visible_request does. The output's URL is made afresh at every call (a presigned one
    lives for its own time from then)."""
    request = await visible_request(request_id, owner=owner, store=store)
    output_file = request.get("output_file")
    return StatusReport(
        status=request["status"],
        output_file_url=file_url(blobs, public_base_url, output_file) if output_file else None,
        progress=await store.progress(request),
        rows_accepted=min(request.get("rows_accepted", request["rows_total"]), request["rows_total"]),
        webhooks=await store.webhook_deliveries(request_id),
    )


@dataclass(frozen=True)
class RowsPage:
    """A page of a request's rows, as the status page shows them. ``total``: how many rows there are to page
    through, None for the rows with a failed image (not counted: see documents.request_rows)."""

    total: int | None
    more: bool
    rows: list[dict]
    input_file_url: str | None


async def request_rows(
    request_id: str,
    *,
    owner: str | None,
    store: Requests,
    public_base_url: str,
    offset: int,
    limit: int,
    failed_only: bool = False,
) -> RowsPage:
    """Seen by the same callers as request_status (visible_request)."""
    request = await visible_request(request_id, owner=owner, store=store)
    rows, more = await store.rows(request, offset=offset, limit=limit, failed_only=failed_only)
    input_file = request.get("input_file")
    total = None if failed_only else request["rows_total"]
    return RowsPage(total, more, rows, blob_url(public_base_url, input_file) if input_file else None)


def is_capability_file(name: str) -> bool:
    """Whether the blob ``name`` is an output (a request's output CSV or one of its images), which anyone
    with its URL may fetch, as a presigned URL: an image's name holds the unguessable request id, and the
    output CSV's a token of its own besides, so that an image's URL opens nothing else. Any other name (the
    input CSV, an output CSV named without a token, one not known) is read only through owned_file_visible."""
    _, _, rest = name.partition("/")
    image = rest.startswith("images/") and "/" not in rest.removeprefix("images/")  # see output_image_stem
    return is_output_csv_name(name) or image


async def expired_file(name: str, *, owner: str | None, store: Requests) -> RequestExpired | None:
    """Why a file that is not there is gone, when its request expired and the caller may see that it did."""
    try:
        await visible_request(name.split("/", 1)[0], owner=owner, store=store)
    except RequestExpired as exc:
        return exc
    except RequestNotFound:
        return None
    return None


async def owned_file_visible(name: str, *, owner: str | None, store: Requests) -> bool:
    """Whether ``name`` is the input CSV (or an output CSV named without a token) of a request that the
    owner may see."""
    request = await store.get(name.split("/", 1)[0])
    return (
        request is not None
        and name in (request.get("input_file"), request.get("output_file"))
        and visible_to(request, owner)
    )
