"""Storing an upload's request and rows as ingest does, without the HTTP API."""

from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.csv_input import CsvSummary
from imgpipe_schemas import ImageOptions
from tests.support.csv_parsing import parse_csv


async def store_upload(
    db,
    request_id: str,
    data: bytes,
    *,
    quality: int = 50,
    webhook_url: str | None = None,
    image_options: ImageOptions | None = None,
) -> RequestStore:
    upload = parse_csv(data)
    requests = RequestStore(db)
    await requests.insert_rows(request_id, upload.rows)
    await requests.insert_request(
        request_id,
        CsvSummary(upload.columns, len(upload.rows), upload.images_total),
        input_file="x",
        webhook_url=webhook_url,
        quality=quality,
        output_format="jpeg",
        image_options=image_options,
    )
    return requests
