"""Retention against the real database and a directory blob store: a finished request past the period goes
with its rows, files, deliveries and publications, and answers 410 Gone; a running one is never touched."""

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from imgpipe_bus import ensure_topics
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.blob_directory import DirectoryBlobStore
from imgpipe_runtime.documents import (
    DELIVERIES,
    IDEMPOTENCY_KEYS,
    PUBLICATIONS,
    REQUESTS,
    ROWS,
    ensure_indexes,
    record_publication,
)
from imgpipe_runtime.mongo import connect
from imgpipe_runtime.retention import prune
from imgpipe_runtime.settings import BlobSettings
from imgpipe_runtime.webhooks import generate_secret
from tests.support.openapi import answers_as_documented
from tests.support.uploads import store_upload

CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://in/0\n2,B,http://in/1\n"
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


async def stored_request(
    mongo_settings, blobs: DirectoryBlobStore, status: str, finished_days_ago: float | None
) -> str:
    """A request with its rows, files, a delivery and a publication; finished that many days ago (None: running)."""
    db = connect(mongo_settings)
    try:
        await ensure_indexes(db)
        request_id = str(uuid.uuid4())
        await store_upload(db, request_id, CSV)
        change: dict = {"status": status, "input_file": f"{request_id}/input.csv", "created_at": NOW - 60 * DAY}
        if finished_days_ago is not None:
            change |= {"completed_at": NOW - finished_days_ago * DAY, "output_file": f"{request_id}/output-tok.csv"}
        await db[REQUESTS].update_one({"_id": request_id}, {"$set": change})
        for name in ("input.csv", "output-tok.csv", "images/0-0.jpg", "images/1-0.jpg"):
            await blobs.put(f"{request_id}/{name}", b"data", "")
        await db[DELIVERIES].insert_one(
            {
                "_id": str(uuid.uuid4()),
                "request_id": request_id,
                "url": "https://h/x",
                "state": "delivered",
                "attempts": [],
                "created_at": NOW - 40 * DAY,
            }
        )
        await record_publication(db, request_id, [0, 1], [(0, 1), (1, 1)])
        return request_id
    finally:
        await db.client.close()


async def counts(mongo_settings, request_id: str) -> dict:
    db = connect(mongo_settings)
    try:
        return {
            collection: await db[collection].count_documents({"request_id": request_id})
            for collection in (ROWS, DELIVERIES, PUBLICATIONS)
        } | {"request": await db[REQUESTS].find_one({"_id": request_id})}
    finally:
        await db.client.close()


async def prune_at(mongo_settings, blobs, before: datetime, dry_run: bool = False):
    db = connect(mongo_settings)
    try:
        return await prune(db, blobs, before, dry_run=dry_run)
    finally:
        await db.client.close()


@pytest.mark.timeout(180)
def test_an_expired_request_goes_with_everything_it_had_and_answers_410(bus_settings, mongo_settings, tmp_path):
    ensure_topics(bus_settings)
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    old = asyncio.run(stored_request(mongo_settings, blobs, "SUCCESS", finished_days_ago=31))
    failed = asyncio.run(stored_request(mongo_settings, blobs, "FAILED", finished_days_ago=45))
    recent = asyncio.run(stored_request(mongo_settings, blobs, "SUCCESS", finished_days_ago=29))
    running = asyncio.run(stored_request(mongo_settings, blobs, "PROCESSING", finished_days_ago=None))
    pending = asyncio.run(stored_request(mongo_settings, blobs, "PENDING", finished_days_ago=None))

    async def old_claims() -> None:
        db = connect(mongo_settings)
        keys = IdempotencyKeys(db)
        await keys.claim("old-key", "d", old, now=NOW - 31 * DAY)
        await keys.claim("new-key", "d", recent, now=NOW)
        await db.client.close()

    asyncio.run(old_claims())

    env = {
        **os.environ,
        "IMGPIPE_MONGO_URL": mongo_settings.url,
        "IMGPIPE_MONGO_DATABASE": mongo_settings.database,
        "IMGPIPE_BLOB_STORE": "directory",
        "IMGPIPE_BLOB_DIR": str(tmp_path / "blobs"),
    }
    imgpipe = str(Path(sys.executable).with_name("imgpipe"))
    dry = subprocess.run(
        [imgpipe, "prune", "--older-than", "30d", "--dry-run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2 finished request(s)" in dry.stdout and old in dry.stdout and failed in dry.stdout
    assert asyncio.run(counts(mongo_settings, old))[ROWS] == 2  # a dry run deletes nothing

    done = subprocess.run(
        [imgpipe, "prune", "--older-than", "30d"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "deleted 2 request(s) (4 rows, 8 files, 2 webhook deliveries), 1 Idempotency-Key claim(s)"
    )

    for gone in (old, failed):
        left = asyncio.run(counts(mongo_settings, gone))
        assert (left[ROWS], left[DELIVERIES], left[PUBLICATIONS]) == (0, 0, 0)
        assert set(left["request"]) == {"_id", "owner", "created_at", "finished_at", "expired_at"}
        assert not (tmp_path / "blobs" / gone).exists()
    for kept in (recent, running, pending):
        left = asyncio.run(counts(mongo_settings, kept))
        assert (left[ROWS], left[DELIVERIES]) == (2, 1) and "expired_at" not in left["request"]
        assert len(list((tmp_path / "blobs" / kept).rglob("*.*"))) == 4

    settings = Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        port=8123,
        webhook_secret=generate_secret(),
        blobs=BlobSettings(store="directory", dir=tmp_path / "blobs"),
    )
    with TestClient(create_api(settings)) as raw:
        client = answers_as_documented(raw)
        for path in (f"/api/output/?request_id={old}", f"/api/rows/?request_id={old}"):
            answer = client.get(path)
            assert answer.status_code == 410, path
            assert f"request {old} finished on" in answer.json()["message"]
            assert "deleted after the retention period" in answer.json()["message"]
        for name in ("output-tok.csv", "images/0-0.jpg", "input.csv"):
            assert client.get(f"/api/files/{old}/{name}").status_code == 410, name
        assert client.get(f"/api/files/{uuid.uuid4()}/output-tok.csv").status_code == 404
        assert client.get(f"/api/output/?request_id={recent}").status_code == 200
        assert client.get(f"/api/files/{recent}/output-tok.csv").status_code == 200

    # A tombstone is kept for another retention period, then goes too; running requests never do.
    later = asyncio.run(prune_at(mongo_settings, blobs, NOW + 31 * DAY))  # a month on: recent's tombstone too
    assert later.tombstones == 3 and set(later.request_ids) == {recent}
    assert asyncio.run(counts(mongo_settings, old))["request"] is None
    assert asyncio.run(counts(mongo_settings, running))[ROWS] == 2

    async def keys_left() -> list[str]:
        db = connect(mongo_settings)
        found = [key["_id"] async for key in db[IDEMPOTENCY_KEYS].find({})]
        await db.client.close()
        return found

    assert asyncio.run(keys_left()) == []


def test_files_are_never_sniffed_and_outputs_are_not_immutable(bus_settings, mongo_settings, tmp_path):
    """An output can be rewritten by a replay: it may be cached for minutes, never as immutable."""
    ensure_topics(bus_settings)
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    request_id = asyncio.run(stored_request(mongo_settings, blobs, "SUCCESS", finished_days_ago=1))
    settings = Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        port=8123,
        webhook_secret=generate_secret(),
        blobs=BlobSettings(store="directory", dir=tmp_path / "blobs"),
    )
    with TestClient(create_api(settings)) as client:
        for name in ("output-tok.csv", "images/0-0.jpg", "input.csv"):
            answer = client.get(f"/api/files/{request_id}/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "immutable" not in answer.headers["cache-control"]
        assert client.get(f"/api/files/{request_id}/output-tok.csv").headers["cache-control"] == "public, max-age=300"
