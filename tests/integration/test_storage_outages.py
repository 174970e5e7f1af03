"""ingest, against the real broker and database, when its file store or its database cannot write (a full
disk): the upload is answered 503 with Retry-After, never 500, and the same upload succeeds once there is
room again, under the same Idempotency-Key."""

import errno
import uuid

import pytest
from fastapi.testclient import TestClient
from pymongo.errors import WriteError

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.blob_directory import DirectoryBlobStore
from imgpipe_runtime.settings import BlobSettings
from imgpipe_runtime.webhooks import generate_secret
from tests.support.openapi import answers_as_documented
from tests.waiting import wait_for

CSV = b'S. No.,Product Name,Input Image Urls\n1,A,"http://img.test/1.jpg,http://img.test/2.jpg"\n2,B,http://img.test/3.jpg\n'


class FullDisk(DirectoryBlobStore):
    """The local directory store on a disk that is full until ``full`` is cleared."""

    full = True

    def write(self, name, data, content_type=""):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(name, data, content_type)


@pytest.fixture
def client(bus_settings, mongo_settings, tmp_path):
    ensure_topics(bus_settings)
    settings = Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        port=8123,
        max_upload_bytes=10_000,
        fetch_allow="127.0.0.1:9",
        webhook_secret=generate_secret(),
        blobs=BlobSettings(store="directory", dir=tmp_path / "blobs"),
    )
    with TestClient(create_api(settings)) as test_client:
        yield answers_as_documented(test_client)


def upload(client, key: str):
    return client.post("/api/upload/", files={"file": ("p.csv", CSV, "text/csv")}, headers={"Idempotency-Key": key})


def unavailable(response) -> bool:
    return (
        response.status_code == 503
        and response.headers["retry-after"].isdigit()
        and response.json()["status"] == "error"
    )


def test_a_full_blob_store_is_503_with_retry_after_and_the_upload_succeeds_once_there_is_room(client, tmp_path):
    disk = FullDisk(tmp_path / "blobs")
    client.app.state.blobs = disk
    key = str(uuid.uuid4())

    refused = upload(client, key)
    assert unavailable(refused), (refused.status_code, refused.text)

    disk.full = False
    accepted = upload(client, key)
    assert accepted.status_code == 200, accepted.text
    request_id = accepted.json()["payload"]["request_id"]
    status = wait_for(
        lambda: (
            (answer := client.get("/api/output/", params={"request_id": request_id}).json())["payload"]["status"]
            == "PROCESSING"
            and answer
        ),
        30,
        "the rows accepted",
    )
    assert status["payload"]["rows_accepted"] == 2
    assert client.get(f"/api/files/{request_id}/input.csv").content == CSV


def test_a_database_out_of_disk_space_is_503_with_retry_after(client, monkeypatch):
    store = client.app.state.store
    insert_request = store.insert_request

    async def out_of_disk_space(*args, **kwargs):
        raise WriteError("Out of disk space", code=14031)

    monkeypatch.setattr(store, "insert_request", out_of_disk_space)
    key = str(uuid.uuid4())
    refused = upload(client, key)
    assert unavailable(refused), (refused.status_code, refused.text)

    monkeypatch.setattr(store, "insert_request", insert_request)
    assert upload(client, key).status_code == 200
