"""Hostile and broken image sources, end to end: each gets the exact per-image error code, and the
request still completes."""

import csv
import io
import uuid

import httpx
import pytest
from PIL import Image

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig

pytestmark = pytest.mark.e2e


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def sources():
    photo = photo_like_jpeg(400, 300, seed=1)
    server = LocalHttpServer()
    server.routes.update(
        {
            "/ok.jpg": Route(photo),
            "/huge.jpg": Route(photo_like_jpeg(1200, 1200, seed=2)),
            "/html": Route(b"<html><body>hello</body></html>", content_type="image/jpeg"),
            "/truncated.jpg": Route(photo[: len(photo) // 3]),
            # Slower than the fetch's total timeout by far: its outcome never depends on the machine's load.
            "/slow.jpg": Route(photo, delay_s=20),
            "/bomb.png": Route(png(Image.new("L", (3000, 3000)))),
        }
    )
    with server:
        port = server.url.rsplit(":", 1)[1]
        server.routes["/to-private"] = Route(b"", status=302, headers={"Location": f"http://127.0.0.2:{port}/ok.jpg"})
        server.routes["/to-metadata"] = Route(b"", status=302, headers={"Location": "http://169.254.169.254/latest"})
        yield server


@pytest.fixture(scope="module")
def stack(infra, sources, tmp_path_factory):
    allow_only_sources = sources.url.removeprefix("http://")
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("hostile-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={
            "IMGPIPE_MONGO_DATABASE": f"hostile_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_FETCH_ALLOW": allow_only_sources,
            "IMGPIPE_FETCH_ATTEMPTS": "1",
            # Long enough for every other source to answer on a loaded machine (a 1 s timeout once made the
            # oversized source a `timeout` before its Content-Length could be read as `too_large`).
            "IMGPIPE_FETCH_TOTAL_TIMEOUT_S": "8",
            "IMGPIPE_MAX_IMAGE_BYTES": "200000",
            "IMGPIPE_MAX_IMAGE_PIXELS": "1000000",
        },
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture
def private(sources):
    server = LocalHttpServer()
    server.routes["/ok.jpg"] = sources.routes["/ok.jpg"]
    with server:
        yield server


def test_each_hostile_source_gets_its_error_code(stack, sources, private):
    other_port = free_port()
    cases = [
        (f"{sources.url}/ok.jpg", None),
        (f"{sources.url}/missing.jpg", "http_404"),
        (f"{sources.url}/huge.jpg", "too_large"),
        (f"{sources.url}/html", "not_an_image"),
        (f"{sources.url}/truncated.jpg", "undecodable_image"),
        (f"{sources.url}/slow.jpg", "timeout"),
        (f"{sources.url}/bomb.png", "too_many_pixels"),
        (f"{sources.url}/to-private", "blocked_address"),
        (f"{sources.url}/to-metadata", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data", "blocked_address"),
        (f"http://localhost:{other_port}/x.jpg", "blocked_address"),
        (f"http://127.0.0.1:{other_port}/x.jpg", "blocked_address"),
        ("http://１６９．２５４．１６９．２５４/latest/meta-data", "blocked_address"),
        # A loopback server that is not allowed, spelt so that the HTTP client normalises it to 127.0.0.1.
        (private.url.replace("127.0.0.1", "１２７．０．０．１") + "/ok.jpg", "blocked_address"),
        (private.url.replace("127.0.0.1", "127。0。0。1") + "/ok.jpg", "blocked_address"),
        (private.url.replace("127.0.0.1", "①②⑦.0.0.1") + "/ok.jpg", "blocked_address"),
    ]
    rows = [(number, f"case {number}", [url]) for number, (url, _) in enumerate(cases, start=1)]
    request_id = upload(stack.api_url, products_csv(rows))
    final = wait_until_finished(stack.api_url, request_id, timeout=90)
    assert final["status"] == "SUCCESS"
    assert final["progress"]["images_ok"] == 1 and final["progress"]["images_failed"] == len(cases) - 1
    table = list(csv.DictReader(io.StringIO(httpx.get(final["output_file_url"]).text)))
    for (url, code), row in zip(cases, table, strict=True):
        if code is None:
            assert row["Output Image Urls"] and not row["Image Errors"]
        else:
            assert row["Output Image Urls"] == ""
            assert f"): {code}:" in row["Image Errors"], (url, row["Image Errors"])
