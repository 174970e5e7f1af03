"""The whole system as processes: upload a CSV, images flow through Kafka, a signed webhook arrives."""

import base64
import csv
import io
import time
import uuid

import httpx
import pytest
from PIL import Image

from tests.waiting import wait_for
from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_runtime.webhooks import verify

SECRET = "whsec_" + base64.b64encode(b"end-to-end test secret").decode()
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    logs = tmp_path_factory.mktemp("stack-logs")
    config = StackConfig(
        api_port=free_port(),
        log_dir=logs,
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={"IMGPIPE_WEBHOOK_SECRET": SECRET, "IMGPIPE_MONGO_DATABASE": f"e2e_{uuid.uuid4().hex[:8]}"},
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def sources():
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
    assert final["progress"] == {"rows_total": 11, "rows_done": 11, "images_total": 32, "images_ok": 31, "images_failed": 1}

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
    assert payload["data"]["output_file_url"] == final["output_file_url"]
    assert payload["data"]["progress"] == final["progress"]


def test_quality_and_format_per_request(stack, sources):
    request_id = upload(stack.api_url, products_csv([(1, "P", [f"{sources.url}/photos/1.jpg"])]), quality="30", format="webp")
    final = wait_until_finished(stack.api_url, request_id, timeout=60)
    output_url = list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"]).text)))[0]["Output Image Urls"]
    image = httpx.get(output_url)
    assert output_url.endswith(".webp") and image.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(image.content)).format == "WEBP"


def test_status_api_answers_unknown_and_malformed_ids_in_the_envelope(stack):
    unknown = httpx.get(f"{stack.api_url}/api/output/", params={"request_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.json()["status"] == "error"
    malformed = httpx.get(f"{stack.api_url}/api/output/", params={"request_id": "not-a-uuid"})
    assert malformed.status_code == 400 and "not a UUID" in malformed.json()["message"]
