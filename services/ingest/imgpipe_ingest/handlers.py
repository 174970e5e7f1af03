"""What ingest decides. Each handler takes its adapters as arguments."""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass

from confluent_kafka import KafkaException

from imgpipe_bus import EventProducer
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.csv_input import InputCsv, Limits, parse_csv
from imgpipe_runtime.blobs import BlobStore, blob_url, input_csv_name
from imgpipe_schemas import Progress, RequestAccepted, RowSubmitted
from imgpipe_schemas.topics import REQUESTS_ACCEPTED, ROWS_SUBMITTED

log = logging.getLogger(__name__)


class RequestNotFound(LookupError):
    pass


@dataclass(frozen=True)
class RequestStatus:
    status: str
    output_file_url: str | None
    progress: Progress
    webhooks: list[dict]


async def accept_upload(
    data: bytes,
    *,
    webhook_url: str | None,
    quality: int,
    output_format: str,
    limits: Limits,
    store: RequestStore,
    blobs: BlobStore,
    producer: EventProducer,
    request_id: str | None = None,
) -> str:
    """Validates the whole CSV, stores it, publishes one event per row. Raises CsvRejected."""
    upload = parse_csv(data, limits)
    request_id = request_id or str(uuid.uuid4())
    input_file = input_csv_name(request_id)
    await blobs.put(input_file, data, "text/csv")
    await store.create(
        request_id,
        upload,
        input_file=input_file,
        webhook_url=webhook_url,
        quality=quality,
        output_format=output_format,
    )
    try:
        await publish_request(request_id, upload, webhook_url, quality, output_format, producer)
    except KafkaException as exc:
        # The request and its rows are stored: the reconciler publishes a PENDING request's rows later.
        log.warning("request %s stored but not yet published (%s); the reconciler will publish it", request_id, exc)
        return request_id
    await store.mark_processing(request_id)
    log.info("accepted request %s: %d rows, %d images", request_id, len(upload.rows), upload.images_total)
    return request_id


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different upload."""


async def accept_upload_once(
    key: str, data: bytes, *, options: dict, keys: IdempotencyKeys, **accept
) -> tuple[str, bool]:
    """accept_upload under an Idempotency-Key: the same key and upload give the same request id (and
    ``False``: nothing new was accepted); the same key with a different upload raises IdempotencyConflict."""
    digest = hashlib.sha256(data + json.dumps(options, sort_keys=True).encode()).hexdigest()
    request_id = str(uuid.uuid4())
    claim = await keys.claim(key, digest, request_id)
    if claim["digest"] != digest:
        raise IdempotencyConflict(key)
    if claim["request_id"] != request_id:
        return claim["request_id"], False
    try:
        await accept_upload(data, request_id=request_id, **options, **accept)
    except BaseException:
        await keys.release(key, request_id)
        raise
    return request_id, True


async def publish_request(
    request_id: str,
    upload: InputCsv,
    webhook_url: str | None,
    quality: int,
    output_format: str,
    producer: EventProducer,
) -> None:
    rid = uuid.UUID(request_id)
    await producer.publish(
        REQUESTS_ACCEPTED,
        RequestAccepted(
            request_id=rid, rows_total=len(upload.rows), images_total=upload.images_total, webhook_url=webhook_url
        ),
    )
    await producer.publish_many(
        ROWS_SUBMITTED,
        (
            RowSubmitted(
                request_id=rid,
                row_index=row.index,
                serial=row.serial,
                product_name=row.product_name,
                image_urls=row.image_urls,
                quality=quality,
                output_format=output_format,
            )
            for row in upload.rows
        ),
    )


async def request_status(request_id: str, *, store: RequestStore, public_base_url: str) -> RequestStatus:
    request = await store.get(request_id)
    if request is None:
        raise RequestNotFound(request_id)
    output_file = request.get("output_file")
    return RequestStatus(
        status=request["status"],
        output_file_url=blob_url(public_base_url, output_file) if output_file else None,
        progress=await store.progress(request),
        webhooks=await store.webhook_deliveries(request_id),
    )
