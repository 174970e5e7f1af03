"""API keys scope what a caller sees (IMGPIPE_API_KEYS set), in-process and over real HTTP, against the
real broker and database."""

import hashlib
import socket
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import uvicorn
from fastapi.testclient import TestClient
from pymongo import MongoClient

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.auth import ApiKeys, owner_id
from imgpipe_ingest.envelope import ClientError
from imgpipe_ingest.settings import Settings
from imgpipe_ops.processes import free_port
from imgpipe_runtime.documents import DELIVERIES, REQUESTS, Origin, new_request
from imgpipe_runtime.settings import BlobSettings
from imgpipe_runtime.webhooks import generate_secret
from imgpipe_schemas import RequestStatus
from tests.waiting import wait_for

KEY_A, KEY_B = "key-of-tenant-a-5f0c2e", "key-of-tenant-b-91d7aa"
AS_A, AS_B = {"X-API-Key": KEY_A}, {"Authorization": f"Bearer {KEY_B}"}
GOOD_CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://img.test/1.jpg\n2,B,http://img.test/2.jpg\n"
OTHER_CSV = GOOD_CSV.replace(b"2,B", b"2,C")


@pytest.fixture
def settings(bus_settings, mongo_settings, tmp_path) -> Settings:
    ensure_topics(bus_settings)
    return Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        port=8123,
        max_upload_bytes=10_000,
        webhook_secret=generate_secret(),
        blobs=BlobSettings(store="directory", dir=tmp_path / "blobs"),
        api_keys=f"{KEY_A}, {KEY_B}",
    )


@pytest.fixture
def client(settings):
    with TestClient(create_api(settings)) as test_client:
        yield test_client


@pytest.fixture
def stored(mongo_settings):
    """The test's database, as the other services see it."""
    with MongoClient(mongo_settings.url) as mongo:
        yield mongo[mongo_settings.database]


def upload(client, headers: dict, data: bytes = GOOD_CSV, key: str | None = None):
    headers = {**headers, **({"Idempotency-Key": key} if key else {})}
    response = client.post("/api/upload/", files={"file": ("p.csv", data, "text/csv")}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["payload"]["request_id"]


def status(client, request_id: str, headers: dict):
    return client.get("/api/output/", params={"request_id": request_id}, headers=headers)


def test_the_owner_is_a_digest_of_the_key_and_none_without_keys():
    keys = ApiKeys.parse(f" {KEY_A},,{KEY_B} ")
    assert keys.owner(None, KEY_A) == keys.owner(f"Bearer {KEY_A}", None) == owner_id(KEY_A)
    assert owner_id(KEY_A) == hashlib.sha256(KEY_A.encode()).hexdigest()[:32] != owner_id(KEY_B)
    for authorization, x_api_key in [(None, None), ("Bearer ", None), (None, "nope"), (f"Basic {KEY_A}", None)]:
        with pytest.raises(ClientError) as refused:
            keys.owner(authorization, x_api_key)
        assert refused.value.code == 401
    assert ApiKeys.parse(" , ").owner(None, None) is None


def test_a_request_is_seen_only_with_the_key_it_was_made_with(client, stored):
    request_id = upload(client, AS_A)
    stored[DELIVERIES].insert_one(
        {
            "_id": "msg_1",
            "request_id": request_id,
            "url": "https://hooks.a.example/secret-path",
            "state": "delivered",
            "attempts": [{"at": datetime.now(UTC), "outcome": "200"}],
            "created_at": datetime.now(UTC),
        }
    )
    mine = status(client, request_id, AS_A)
    assert mine.status_code == 200
    assert [webhook["url"] for webhook in mine.json()["payload"]["webhooks"]] == ["https://hooks.a.example/secret-path"]

    theirs = status(client, request_id, AS_B)
    unknown_id = str(uuid.uuid4())
    unknown = status(client, unknown_id, AS_B)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == {**unknown.json(), "message": unknown.json()["message"].replace(unknown_id, request_id)}
    assert status(client, request_id, {}).status_code == 401

    document = stored[REQUESTS].find_one({"_id": request_id})
    assert document["owner"] == owner_id(KEY_A)
    assert KEY_A not in repr(document)


def test_requests_without_an_owner_are_seen_with_every_key(settings, client, stored):
    with TestClient(create_api(settings.model_copy(update={"api_keys": ""}))) as open_client:
        uploaded_open = upload(open_client, {})
    direct = str(uuid.uuid4())
    stored[REQUESTS].insert_one(
        {
            "_id": direct,
            **new_request(
                status=RequestStatus.PROCESSING,
                origin=Origin.KAFKA,
                columns=["S. No."],
                rows_total=1,
                images_total=1,
                webhook_url=None,
                now=datetime.now(UTC),
            ),
        }
    )
    for headers in (AS_A, AS_B):
        assert status(client, uploaded_open, headers).status_code == 200
        assert status(client, direct, headers).status_code == 200
        assert client.get(f"/api/files/{uploaded_open}/input.csv", headers=headers).content == GOOD_CSV
    assert status(client, direct, {}).status_code == 401


def test_the_input_csv_needs_its_owners_key_and_outputs_need_none(client, settings):
    request_id = upload(client, AS_A)
    input_csv = f"/api/files/{request_id}/input.csv"
    mine = client.get(input_csv, headers=AS_A)
    assert (mine.content, mine.headers["cache-control"]) == (GOOD_CSV, "private, no-store")
    for headers, code in [(AS_B, 404), ({}, 401), ({"X-API-Key": "nope"}, 401)]:
        assert client.get(input_csv, headers=headers).status_code == code
    not_found = client.get(input_csv, headers=AS_B).json()
    assert not_found == client.get(f"/api/files/{uuid.uuid4()}/input.csv", headers=AS_B).json() | {
        "message": f"no file named {request_id}/input.csv"
    }
    # The directory store finds a file under any spelling on a case-insensitive disk: no spelling is an output.
    assert client.get(f"/api/files/{request_id}/INPUT.csv", headers=AS_B).status_code == 404

    blobs = settings.blobs.dir / request_id
    (blobs / "images").mkdir(parents=True)
    (blobs / "output-Tok3n.csv").write_bytes(b"output")
    (blobs / "output.csv").write_bytes(b"an output named without a token")
    (blobs / "images" / "0-0.jpg").write_bytes(b"\xff\xd8image")
    assert client.get(f"/api/files/{request_id}/output-Tok3n.csv").content == b"output"
    assert client.get(f"/api/files/{request_id}/images/0-0.jpg").content == b"\xff\xd8image"
    # An image's URL names the request, which opens nothing else: an output CSV without its token is not
    # the request's output, and needs the owner's key like any other file.
    for headers, code in [({}, 401), (AS_B, 404), (AS_A, 404)]:
        assert client.get(f"/api/files/{request_id}/output.csv", headers=headers).status_code == code


def test_the_api_port_serves_no_metrics_even_with_a_key(client):
    """The metrics are on ingest's own metrics port (IMGPIPE_METRICS_PORT), never where the API is published."""
    for headers in ({}, AS_A):
        assert client.get("/metrics", headers=headers).status_code == 404


def test_idempotency_keys_are_scoped_by_api_key(client):
    first_a = upload(client, AS_A, key="order-1")
    first_b = upload(client, AS_B, key="order-1")  # the same key and upload under another API key: its own
    assert first_a != first_b
    assert upload(client, AS_A, key="order-1") == first_a
    assert upload(client, AS_B, key="order-1") == first_b
    assert upload(client, AS_B, OTHER_CSV, key="order-2") != upload(client, AS_A, GOOD_CSV, key="order-2")
    conflict = client.post(
        "/api/upload/", files={"file": ("p.csv", OTHER_CSV, "text/csv")}, headers={**AS_A, "Idempotency-Key": "order-1"}
    )
    assert conflict.status_code == 409


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "nope"}], ids=["no-key", "wrong-key"])
def test_an_upload_without_a_valid_key_is_refused_before_its_body_is_read(client, monkeypatch, headers):
    from starlette.requests import Request

    streamed = []
    stream = Request.stream

    def spied_stream(self):
        streamed.append(self.url.path)
        return stream(self)

    monkeypatch.setattr(Request, "stream", spied_stream)
    response = client.post("/api/upload/", files={"file": ("p.csv", GOOD_CSV, "text/csv")}, headers=headers)
    assert response.status_code == 401
    assert streamed == []
    assert client.post("/api/upload/", files={"file": ("p.csv", GOOD_CSV, "text/csv")}, headers=AS_A).status_code == 200
    assert streamed == ["/api/upload/"]


@contextmanager
def serving(settings: Settings):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the API to start")
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_large_upload_with_a_wrong_key_gets_401_before_it_is_sent(settings):
    """20 MB declared, 16 KiB sent: the 401 comes back while the client has sent almost nothing."""
    declared = 20 * 1024 * 1024
    with (
        serving(settings.model_copy(update={"max_upload_bytes": declared})) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as connection,
    ):
        connection.sendall(
            b"POST /api/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: nope\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
            + b'--b\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n\r\n'
            + b"x" * 16 * 1024
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(4096)  # the socket's timeout is the deadline
            assert chunk, f"the connection closed without an answer: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
