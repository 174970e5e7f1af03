"""ingest reads an upload a chunk at a time: its memory does not grow with the size of the file."""

import csv
import io
import uuid

import httpx
import pytest

from imgpipe_bus import BusSettings, ensure_topics
from imgpipe_ops.client import healthy, status, upload
from imgpipe_ops.processes import Process, free_port, venv_command
from imgpipe_runtime.webhooks import generate_secret

pytestmark = pytest.mark.e2e
MAX_UPLOAD = 20 * 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def products(rows: int, description_chars: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["S. No.", "Product Name", "Input Image Urls", "Description"])
    for n in range(1, rows + 1):
        writer.writerow([n, f"Product {n}", f"http://images.example/{n}.jpg", "d" * description_chars])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def ingest(infra, tmp_path_factory):
    ensure_topics(BusSettings(bootstrap_servers=infra.bootstrap, partitions=4))
    port = free_port()
    process = Process(
        "ingest",
        [venv_command("ingest")],
        env={
            "IMGPIPE_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
            "IMGPIPE_MONGO_URL": infra.mongo_url,
            "IMGPIPE_MONGO_DATABASE": f"memory_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_HOST": "127.0.0.1",
            "IMGPIPE_PORT": str(port),
            "IMGPIPE_METRICS_PORT": str(free_port()),
            "IMGPIPE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "IMGPIPE_WEBHOOK_SECRET": generate_secret(),
        },
        log=tmp_path_factory.mktemp("ingest-log") / "ingest.log",
    ).start()
    api = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(lambda: healthy(api), 60, "ingest answered /healthz")
        yield process, api
    finally:
        process.stop()


def test_the_largest_accepted_file_does_not_grow_ingest_memory_by_its_size(ingest):
    process, api = ingest
    upload(api, products(50, 10))  # loads every code path once
    before = peak_rss_mb(process.pid)

    data = products(10_000, 1_990)
    assert MAX_UPLOAD - 1024 * 1024 < len(data) <= MAX_UPLOAD
    request_id = upload(api, data)
    assert status(api, request_id)["progress"]["rows_total"] == 10_000
    downloaded = httpx.get(f"{api}/api/files/{request_id}/input.csv", timeout=60)
    assert downloaded.content == data

    growth = peak_rss_mb(process.pid) - before
    print(f"{len(data) / 2**20:.1f} MiB upload and download: ingest peak memory grew {growth:.1f} MiB")
    assert growth < len(data) / 2**20, f"peak memory grew {growth:.1f} MiB for a {len(data) / 2**20:.1f} MiB file"
