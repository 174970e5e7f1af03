"""The whole system as processes: upload a CSV, images flow through Kafka, a signed webhook arrives."""

import base64
import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from PIL import Image, ImageDraw

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.dlq import Filters
from imgpipe_ops.dlq import read as read_dead_letters
from imgpipe_ops.processes import free_port, venv_command
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_runtime.webhooks import verify
from imgpipe_schemas.topics import ROWS_SUBMITTED
from tests.support.s3 import new_bucket
from tests.support.tagged import tagged_jpeg
from tests.waiting import wait_for

SECRET = "whsec_" + base64.b64encode(b"end-to-end test secret").decode()
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["directory", "gridfs", "s3"])
def stack(request, infra, tmp_path_factory):
    """The whole pipeline on each blob store: a local directory (make run), GridFS and an S3 bucket (compose)."""
    logs = tmp_path_factory.mktemp("stack-logs")
    blobs = {"IMGPIPE_BLOB_STORE": request.param}
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        blobs |= {
            "IMGPIPE_S3_BUCKET": new_bucket(endpoint),
            "IMGPIPE_S3_ENDPOINT_URL": endpoint,
            "IMGPIPE_S3_ACCESS_KEY_ID": "imgpipe-e2e",
            "IMGPIPE_S3_SECRET_ACCESS_KEY": "imgpipe-e2e-secret",
            "IMGPIPE_OUTPUT_URL_TTL": "3600",
        }
    config = StackConfig(
        api_port=free_port(),
        log_dir=logs,
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={
            "IMGPIPE_WEBHOOK_SECRET": SECRET,
            "IMGPIPE_MONGO_DATABASE": f"e2e_{uuid.uuid4().hex[:8]}",
            **blobs,
        },
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def sources(stack):
    """One image server per stack, so that each records only its own stack's webhooks."""
    routes = {f"/photos/{i}.jpg": Route(photo_like_jpeg(900, 600, seed=i)) for i in range(30)}
    with LocalHttpServer(routes=routes) as server:
        yield server


def test_csv_to_compressed_images_and_signed_webhook(stack, sources):
    rows = [(r + 1, f"Product {r + 1}", [f"{sources.url}/photos/{r * 3 + j}.jpg" for j in range(3)]) for r in range(10)]
    rows.append((11, "Broken", [f"{sources.url}/photos/0.jpg", f"{sources.url}/missing.jpg"]))
    started = time.monotonic()
    request_id = upload(stack.api_url, products_csv(rows), webhook_url=f"{sources.url}/hook")

    final = wait_until_finished(stack.api_url, request_id, timeout=90)
    elapsed = time.monotonic() - started
    print(f"upload → SUCCESS: {elapsed:.2f} s")
    assert final["status"] == "SUCCESS"
    assert final["progress"] == {
        "rows_total": 11,
        "rows_done": 11,
        "images_total": 32,
        "images_ok": 31,
        "images_failed": 1,
    }

    output = httpx.get(final["output_file_url"], timeout=10)
    assert output.status_code == 200 and output.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(output.text)))
    assert [row["S. No."] for row in table] == [str(r[0]) for r in rows]
    for (_, name, urls), row in zip(rows, table, strict=True):
        assert row["Product Name"] == name
        assert row["Input Image Urls"] == ",".join(urls)
        outputs = row["Output Image Urls"].split(",")
        assert len(outputs) == len(urls)
        for source_url, output_url in zip(urls, outputs, strict=True):
            if source_url.endswith("missing.jpg"):
                assert output_url == ""
                assert "http_404" in row["Image Errors"]
                continue
            image = httpx.get(output_url, timeout=10)
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
            decoded = Image.open(io.BytesIO(image.content))
            assert decoded.format == "JPEG" and decoded.size == (900, 600)
            assert len(image.content) < len(sources.routes[source_url.removeprefix(sources.url)].body)

    hook = wait_for(lambda: [r for r in sources.received if r.path == "/hook"], 30, "the webhook")[0]
    payload = verify(SECRET, hook.body, hook.headers)
    assert hook.headers["webhook-id"]
    assert payload["type"] == "request.completed"
    assert payload["data"]["request_id"] == request_id
    # The same file; a presigned URL is signed anew for each answer.
    assert without_query(payload["data"]["output_file_url"]) == without_query(final["output_file_url"])
    assert payload["data"]["progress"] == final["progress"]


def without_query(url: str) -> str:
    return url.partition("?")[0]


def test_output_urls_lead_to_the_store_and_ingest_serves_every_file_as_well(stack, sources):
    """With a bucket, output URLs are the bucket's (presigned: no credentials needed) and ingest's /api/files
    answers with a redirect there; with the other stores ingest serves the bytes itself."""
    request_id = upload(stack.api_url, products_csv([(1, "P", [f"{sources.url}/photos/2.jpg"])]))
    final = wait_until_finished(stack.api_url, request_id, timeout=60)
    output_url = list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"]).text)))[0]["Output Image Urls"]
    image = httpx.get(output_url, timeout=10)
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).format == "JPEG"

    name = f"{request_id}/images/0-0.jpg"
    through_ingest = httpx.get(f"{stack.api_url}/api/files/{name}", timeout=10)
    if stack.config.env["IMGPIPE_BLOB_STORE"] == "s3":
        bucket = stack.config.env["IMGPIPE_S3_BUCKET"]
        assert output_url.startswith(f"{stack.config.env['IMGPIPE_S3_ENDPOINT_URL']}/{bucket}/{name}?X-Amz-")
        assert final["output_file_url"].startswith(f"{stack.config.env['IMGPIPE_S3_ENDPOINT_URL']}/{bucket}/")
        assert "X-Amz-Expires=3600" in output_url
        assert through_ingest.status_code == 307
        through_ingest = httpx.get(through_ingest.headers["location"], timeout=10)
    else:
        assert output_url == f"{stack.api_url}/api/files/{name}"
    assert through_ingest.status_code == 200 and through_ingest.content == image.content


def test_quality_and_format_per_request(stack, sources):
    request_id = upload(
        stack.api_url, products_csv([(1, "P", [f"{sources.url}/photos/1.jpg"])]), quality="30", format="webp"
    )
    final = wait_until_finished(stack.api_url, request_id, timeout=60)
    output_url = list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"]).text)))[0]["Output Image Urls"]
    image = httpx.get(output_url)
    assert without_query(output_url).endswith(".webp") and image.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(image.content)).format == "WEBP"


def test_resized_and_stripped_per_request(stack, sources):
    sources.routes["/photos/tagged.jpg"] = Route(tagged_jpeg(quality=95))  # 640×480, GPS and serial in EXIF
    urls = [f"{sources.url}/photos/2.jpg", f"{sources.url}/photos/tagged.jpg"]
    request_id = upload(stack.api_url, products_csv([(1, "P", urls)]), max_width="100", metadata="strip")
    final = wait_until_finished(stack.api_url, request_id, timeout=60)
    row = list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"]).text)))[0]
    photo, tagged = (httpx.get(url).content for url in row["Output Image Urls"].split(","))
    image = Image.open(io.BytesIO(photo))
    assert (image.format, image.size) == ("JPEG", (100, 67))  # 900×600 at most 100 wide, aspect kept
    image = Image.open(io.BytesIO(tagged))
    assert (image.format, image.size) == ("JPEG", (100, 75))
    assert dict(image.getexif()) == {} and "xmp" not in image.info and b"SN-123456" not in tagged


def product_on(size: tuple[int, int], background: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", size, background)
    width, height = size
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(30, 80, 150))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_a_marketplace_preset_says_why_it_would_reject_an_image(stack, sources):
    sources.routes["/photos/small-grey.jpg"] = Route(product_on((640, 480), (200, 200, 200)))
    sources.routes["/photos/large-white.jpg"] = Route(product_on((1200, 900), (255, 255, 255)))
    urls = [f"{sources.url}/photos/small-grey.jpg", f"{sources.url}/photos/large-white.jpg"]
    request_id = upload(stack.api_url, products_csv([(1, "Lamp", urls)]), preset="amazon")
    final = wait_until_finished(stack.api_url, request_id, timeout=60)
    row = list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"]).text)))[0]
    assert row["Image Checks"] == (
        "image 1: 640×480 is below 1000 px on its longest side; "
        "image 1: background is not pure white (measured 200,200,200)"
    )
    assert all(without_query(url).endswith(".jpg") for url in row["Output Image Urls"].split(","))
    shown = httpx.get(f"{stack.api_url}/api/rows/", params={"request_id": request_id}).json()["payload"]["rows"][0]
    assert [image["checks"] for image in shown["images"]] == [
        ["640×480 is below 1000 px on its longest side", "background is not pure white (measured 200,200,200)"],
        [],
    ]


def test_status_api_answers_unknown_and_malformed_ids_in_the_envelope(stack):
    unknown = httpx.get(f"{stack.api_url}/api/output/", params={"request_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.json()["status"] == "error"
    malformed = httpx.get(f"{stack.api_url}/api/output/", params={"request_id": "not-a-uuid"})
    assert malformed.status_code == 400 and "not a UUID" in malformed.json()["message"]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def direct_output(stack, request_id: str) -> tuple[dict, list[dict]]:
    """A request produced to Kafka is known to the status API once the assembler has read it (404 before)."""
    status_url = f"{stack.api_url}/api/output/"
    wait_for(lambda: httpx.get(status_url, params={"request_id": request_id}).status_code == 200, 30, "the request")
    final = wait_until_finished(stack.api_url, request_id, timeout=60)
    return final, list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"], timeout=10).text)))


def test_a_request_produced_straight_to_kafka_with_confluent_kafka(stack, sources):
    urls = [f"{sources.url}/photos/{i}.jpg" for i in range(3)]
    produced = subprocess.run(
        [
            sys.executable,
            EXAMPLES / "produce_request.py",
            "--bootstrap",
            stack.bootstrap,
            "--webhook-url",
            f"{sources.url}/direct-hook",
            f"Shoe={urls[0]},{urls[1]}",
            f"Hat={urls[2]}",
            "Odd=ftp://images.example/x.jpg",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    request_id = produced.stdout.strip()
    final, table = direct_output(stack, request_id)
    assert final["status"] == "SUCCESS"
    assert final["progress"] == {"rows_total": 3, "rows_done": 3, "images_total": 4, "images_ok": 3, "images_failed": 1}
    assert [(row["S. No."], row["Product Name"], row["Input Image Urls"]) for row in table] == [
        ("1", "Shoe", f"{urls[0]},{urls[1]}"),
        ("2", "Hat", urls[2]),
        ("3", "Odd", "ftp://images.example/x.jpg"),
    ]
    assert all(httpx.get(url).status_code == 200 for row in table[:2] for url in row["Output Image Urls"].split(","))
    # A direct producer's rows skip ingest's CSV rules; a URL they would refuse is a per-image error.
    assert table[2]["Output Image Urls"] == "" and "invalid_url" in table[2]["Image Errors"]
    hook = wait_for(lambda: [r for r in sources.received if r.path == "/direct-hook"], 30, "the webhook")[0]
    assert verify(SECRET, hook.body, hook.headers)["data"]["request_id"] == request_id


def test_a_request_produced_straight_to_kafka_with_kcat(stack, sources):
    produced = subprocess.run(
        [EXAMPLES / "produce_request.sh", stack.bootstrap, "Scarf", f"{sources.url}/photos/4.jpg"],
        env={**os.environ, "KCAT": f"{venv_command('imgpipe')} kcat"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    final, table = direct_output(stack, produced.stdout.strip())
    assert final["status"] == "SUCCESS" and final["progress"]["images_ok"] == 1
    assert (table[0]["Product Name"], table[0]["Input Image Urls"]) == ("Scarf", f"{sources.url}/photos/4.jpg")


def test_a_produced_event_that_fails_its_schema_is_dead_lettered_with_the_reason(stack, sources):
    request_id = str(uuid.uuid4())
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "row.submitted",
        "schema_version": 1,
        "request_id": request_id,
        "occurred_at": "2026-11-24T10:00:00Z",
        "row_index": 0,
        "serial": 1,
        "product_name": "No quality",
        "image_urls": [f"{sources.url}/photos/5.jpg"],
        "output_format": "jpeg",
    }
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(ROWS_SUBMITTED.name, key=f"{request_id}:0", value=json.dumps(event).encode())
    assert producer.flush(10) == 0

    mine = Filters(topic=ROWS_SUBMITTED.name, request_id=request_id)
    letters = wait_for(lambda: list(read_dead_letters(stack.bootstrap, mine)), 60, "the dead letter")
    assert "missing required field(s): quality" in letters[0].context("exception.message")
    assert letters[0].context("consumer.group") == "image-worker"
    # The pipeline goes on; the assembler, which reads the same topic, does not dead-letter it again.
    request_id = upload(stack.api_url, products_csv([(1, "After", [f"{sources.url}/photos/6.jpg"])]))
    assert wait_until_finished(stack.api_url, request_id, timeout=60)["status"] == "SUCCESS"
    assert len(list(read_dead_letters(stack.bootstrap, mine))) == 1
