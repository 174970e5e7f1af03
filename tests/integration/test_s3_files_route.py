"""Ingest over the S3 blob store, against the real broker and database and an S3 server: the uploaded CSV
lands in the bucket, and /api/files answers with a redirect to a presigned URL after its own checks (an
input CSV only for its uploader's key, a missing file 404), never streaming the bytes itself."""

import urllib.parse

import httpx
import pytest
from fastapi.testclient import TestClient

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.settings import BlobSettings
from imgpipe_runtime.webhooks import generate_secret

KEY_A, KEY_B = "key-of-tenant-a-5f0c2e", "key-of-tenant-b-91d7aa"
CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://img.test/1.jpg\n"


@pytest.fixture
def client(bus_settings, mongo_settings, s3_settings):
    ensure_topics(bus_settings)
    settings = Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        webhook_secret=generate_secret(),
        blobs=BlobSettings(store="s3", s3=s3_settings),
        api_keys=f"{KEY_A}, {KEY_B}",
    )
    with TestClient(create_api(settings), follow_redirects=False) as test_client:
        yield test_client


def test_an_input_csv_is_a_short_presigned_redirect_for_its_uploader_only(client, s3_settings):
    uploaded = client.post("/api/upload/", files={"file": ("p.csv", CSV, "text/csv")}, headers={"X-API-Key": KEY_A})
    assert uploaded.status_code == 200, uploaded.text
    name = f"{uploaded.json()['payload']['request_id']}/input.csv"

    answer = client.get(f"/api/files/{name}", headers={"X-API-Key": KEY_A})
    assert answer.status_code == 307 and answer.headers["cache-control"] == "private, no-store"
    location = answer.headers["location"]
    assert location.startswith(f"{s3_settings.endpoint_url}/{s3_settings.bucket}/{name}?")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["X-Amz-Expires"] == ["300"]
    fetched = httpx.get(location, timeout=10)
    assert fetched.status_code == 200 and fetched.content == CSV

    assert client.get(f"/api/files/{name}", headers={"X-API-Key": KEY_B}).status_code == 404
    assert client.get(f"/api/files/{name}").status_code == 401


def test_a_missing_output_is_404_not_a_redirect(client):
    missing = client.get("/api/files/6f1c4a52-8a0e-4b4e-9d7f-0c1a2b3c4d5e/images/0-0.jpg")
    assert missing.status_code == 404 and "location" not in missing.headers


def test_the_status_page_lets_images_come_from_the_bucket(client, s3_settings):
    page = client.get("/requests/6f1c4a52-8a0e-4b4e-9d7f-0c1a2b3c4d5e")
    policy = page.headers["content-security-policy"]
    assert f"img-src 'self' http://127.0.0.1:8000 {s3_settings.endpoint_url};" in policy
