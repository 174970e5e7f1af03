"""Submits a request straight to Kafka, without the HTTP API; prints its request id.

    python examples/produce_request.py --bootstrap 127.0.0.1:19092 \
        "Shoe=https://a.example/1.jpg,https://a.example/2.jpg" "Hat=…"

One row per PRODUCT=URL[,URL…] argument, serials from 1. Then: GET /api/output/?request_id=<the printed id>
"""

import argparse
import json
import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer

parser = argparse.ArgumentParser()
parser.add_argument("--bootstrap", default="127.0.0.1:19092")
parser.add_argument("--webhook-url")
parser.add_argument("rows", nargs="+", metavar="PRODUCT=URL[,URL...]")
args = parser.parse_args()
rows = [(name, urls.split(",")) for name, urls in (row.split("=", 1) for row in args.rows)]
request_id = str(uuid.uuid4())


def event(event_type: str, **fields) -> bytes:
    """Every field of the event's JSON Schema (schemas/json/v1/) is required."""
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "request_id": request_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(envelope | fields).encode()


producer = Producer({"bootstrap.servers": args.bootstrap})
producer.produce(
    "imgpipe.requests.accepted",
    key=request_id,
    value=event(
        "request.accepted",
        rows_total=len(rows),
        images_total=sum(len(urls) for _, urls in rows),
        webhook_url=args.webhook_url,
    ),
)
for index, (name, urls) in enumerate(rows):
    producer.produce(
        "imgpipe.rows.submitted",
        key=f"{request_id}:{index}",
        value=event(
            "row.submitted",
            row_index=index,
            serial=index + 1,
            product_name=name,
            image_urls=urls,
            quality=50,
            output_format="jpeg",
        ),
    )
if producer.flush(30):
    raise SystemExit("not every event was delivered")
print(request_id)
