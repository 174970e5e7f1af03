"""`imgpipe upload` and `imgpipe status` as a person runs them, against a running stack."""

import base64
import csv
import io
import subprocess
import uuid

import pytest

from imgpipe_ops.processes import free_port, venv_command
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig

API_KEY = "cli-test-key-" + uuid.uuid4().hex
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sources():
    photo = photo_like_jpeg(400, 300, seed=1)
    with LocalHttpServer(routes={f"/p/{i}.jpg": Route(photo) for i in range(6)}) as server:
        yield server


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("cli-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={
            "IMGPIPE_MONGO_DATABASE": f"cli_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_API_KEYS": API_KEY,
            "IMGPIPE_LOG_ACCESS": "true",
            "IMGPIPE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"cli test secret!").decode(),
        },
    )
    with LocalStack(config) as running:
        yield running


def imgpipe(stack, *args: str, key: str | None = API_KEY) -> subprocess.CompletedProcess:
    env = {"IMGPIPE_API_URL": stack.api_url, "PATH": "/usr/bin:/bin"}
    if key:
        env["IMGPIPE_API_KEY"] = key
    return subprocess.run([venv_command("imgpipe"), *args], env=env, capture_output=True, text=True, timeout=180)


def test_upload_waits_with_a_progress_bar_and_downloads_the_output(stack, sources, tmp_path):
    products = tmp_path / "products.csv"
    products.write_bytes(
        products_csv(
            [
                (1, "Hat", [f"{sources.url}/p/0.jpg", f"{sources.url}/p/1.jpg"]),
                (2, "Cap", [f"{sources.url}/p/2.jpg", f"{sources.url}/missing.jpg"]),
            ]
        )
    )
    output = tmp_path / "out.csv"
    done = imgpipe(stack, "upload", str(products), "--quality", "40", "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert "SUCCESS: rows 2/2, images 3 ok, 1 failed of 4" in done.stdout
    assert "images:" in done.stderr and "rows 2/2, failed 1" in done.stderr  # the progress bar's last state
    table = list(csv.reader(io.StringIO(output.read_text())))
    assert table[0][-4:] == ["Output Image Urls", "Image Errors", "Image Details", "Image Checks"]
    assert [len(row[3].split(",")) for row in table[1:]] == [2, 2]
    assert "http_404" in table[2][4]
    request_id = done.stdout.split()[1]
    shown = imgpipe(stack, "status", request_id)
    assert shown.returncode == 0 and shown.stdout.startswith("SUCCESS: rows 2/2")


def test_refusals_exit_2_with_the_servers_message(stack, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"S. No.,Product Name,Input Image Urls\nx,Hat,ftp://nowhere/a.jpg\n")
    refused = imgpipe(stack, "upload", str(bad), "--wait")
    assert refused.returncode == 2
    assert "the API answered 400: the CSV was rejected" in refused.stderr
    assert "row 1, Input Image Urls: 'ftp://nowhere/a.jpg': not an http(s) URL" in refused.stderr
    without_key = imgpipe(stack, "upload", str(bad), key=None)
    assert (without_key.returncode, "401" in without_key.stderr) == (2, True)
    assert "API key" in without_key.stderr
    unknown = imgpipe(stack, "status", str(uuid.uuid4()))
    assert unknown.returncode == 2 and "404" in unknown.stderr
    nowhere = imgpipe(stack, "upload", str(bad), "--output", str(tmp_path / "no-such-dir" / "out.csv"))
    assert nowhere.returncode == 2 and "request" not in nowhere.stdout, nowhere.stdout
    assert f"cannot write the output CSV to {tmp_path}/no-such-dir/out.csv: no such directory" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_a_request_that_finished_failed_exits_1(stack):
    """A request is FAILED only when no row could be processed at all: one is stored as the assembler
    leaves it, and its status read."""
    from datetime import UTC, datetime

    from pymongo import MongoClient

    from imgpipe_runtime.documents import REQUESTS, Origin, new_request
    from imgpipe_schemas import RequestStatus

    request_id = str(uuid.uuid4())
    document = new_request(
        status=RequestStatus.FAILED,
        origin=Origin.KAFKA,
        columns=[],
        rows_total=1,
        images_total=1,
        webhook_url=None,
        now=datetime.now(UTC),
    )
    document["progress"] = {"rows_total": 1, "rows_done": 1, "images_total": 1, "images_ok": 0, "images_failed": 1}
    client = MongoClient(stack.mongo_url)
    try:
        client[stack.config.env["IMGPIPE_MONGO_DATABASE"]][REQUESTS].insert_one({"_id": request_id, **document})
    finally:
        client.close()
    failed = imgpipe(stack, "status", request_id)
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith("FAILED: rows 1/1")


def test_log_lines_about_a_request_carry_its_id_and_the_access_log_is_on(stack, sources, tmp_path):
    """Every service's lines about the request name it as a field, so that an operator can follow it."""
    from tests.waiting import wait_for

    products = tmp_path / "one.csv"
    products.write_bytes(products_csv([(1, "Mitten", [f"{sources.url}/p/3.jpg", f"{sources.url}/gone.jpg"])]))
    done = imgpipe(stack, "upload", str(products), "--wait")
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.split()[1]

    def logged(service: str) -> str:
        return (stack.config.log_dir / f"{service}.log").read_text()

    wait_for(lambda: f"request_id={request_id}" in logged("assembler"), 30, "the assembler's line")
    ingest = logged("ingest")
    assert f"request_id={request_id}" in ingest and "accepted request" in ingest
    assert "POST /api/upload/" in ingest  # the access log
    worker = wait_for(
        lambda: [line for line in logged("image-worker").splitlines() if "gone.jpg" in line], 30, "the worker's line"
    )
    assert all(f"request_id={request_id}" in line and "row_index=0" in line for line in worker), worker
