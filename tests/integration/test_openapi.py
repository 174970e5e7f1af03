"""ingest's OpenAPI document against what the app answers, in-process, against the real broker and database:
every status documented for a route is provoked and answered with the documented envelope, and a route
answers no status that it does not document (here, in test_api.py through answers_as_documented, and in
the schemathesis run)."""

import uuid
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from pymongo.errors import AutoReconnect

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import FORM_OVERHEAD_BYTES, create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.settings import BlobSettings
from imgpipe_runtime.webhooks import generate_secret, sign_headers
from tests.support.openapi import check_documented, documented_statuses, route_of

KEY = "openapi-test-key-7c1d"
AS_OWNER = {"X-API-Key": KEY}
GOOD_CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://img.test/1.jpg\n"
MAX_UPLOAD = 10_000


@pytest.fixture
def settings(bus_settings, mongo_settings, tmp_path) -> Settings:
    ensure_topics(bus_settings)
    return Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        port=8123,
        max_upload_bytes=MAX_UPLOAD,
        webhook_secret=generate_secret(),
        blobs=BlobSettings(store="directory", dir=tmp_path / "blobs"),
    )


@pytest.fixture
def open_client(settings):
    with TestClient(create_api(settings)) as client:
        yield client


@pytest.fixture
def keyed_client(settings):
    with TestClient(create_api(settings.model_copy(update={"api_keys": KEY}))) as client:
        yield client


def upload(client, data: bytes = GOOD_CSV, headers: dict | None = None, **kwargs):
    return client.post("/api/upload/", files={"file": ("p.csv", data, "text/csv")}, headers=headers, **kwargs)


def uploaded(client, headers: dict | None = None) -> str:
    response = upload(client, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["payload"]["request_id"]


@contextmanager
def database_down(client, method: str):
    """The request store's ``method`` fails as it does while the database is unreachable."""

    async def unreachable(*_, **__):
        raise AutoReconnect("connection refused")

    store = client.app.state.store
    setattr(store, method, unreachable)
    try:
        yield
    finally:
        delattr(store, method)


def down(method: str, call):
    def provoke(client, headers):
        with database_down(client, method):
            return call(client, headers)

    return provoke


def output(request_id: str | None):
    return lambda client, headers: client.get("/api/output/", params={"request_id": request_id}, headers=headers)


def rows(**params):
    return lambda client, headers: client.get("/api/rows/", params=params, headers=headers)


def own_output(client, headers):
    return client.get("/api/output/", params={"request_id": uploaded(client, headers)}, headers=headers)


def own_rows(client, headers):
    return client.get("/api/rows/", params={"request_id": uploaded(client, headers)}, headers=headers)


def own_input(client, headers):
    return client.get(f"/api/files/{uploaded(client, headers)}/input.csv", headers=headers)


def input_of(request_id: str):
    return lambda client, headers: client.get(f"/api/files/{request_id}/input.csv", headers=headers)


def expired(call):
    """``call(request_id)`` on a request of the caller's whose retention ran out (its tombstone)."""

    def provoke(client, headers):
        from datetime import UTC, datetime

        from pymongo import MongoClient

        request_id = uploaded(client, headers)
        mongo = client.app.state.settings.mongo
        with MongoClient(mongo.url) as direct:
            requests = direct[mongo.database]["requests"]
            owner = requests.find_one({"_id": request_id})["owner"]
            now = datetime.now(UTC)
            requests.replace_one({"_id": request_id}, {"owner": owner, "finished_at": now, "expired_at": now})
        return call(request_id)(client, headers)

    return provoke


def conflict(client, headers):
    assert upload(client, headers={**headers, "Idempotency-Key": "k"}).status_code == 200
    return upload(client, GOOD_CSV.replace(b"1,A", b"1,B"), headers={**headers, "Idempotency-Key": "k"})


def webhook(signed: bool, body: bytes = b'{"type": "request.completed", "data": {}}'):
    def provoke(client, _):
        secret = client.app.state.settings.webhook_secret
        return client.post("/api/webhook/", content=body, headers=sign_headers(secret, "msg_1", body) if signed else {})

    return provoke


def unhealthy(client, _):
    import imgpipe_ingest.routes.health as health

    async def unreachable(_db):
        return False

    reachable, health.database_reachable = health.database_reachable, unreachable
    try:
        return client.get("/healthz")
    finally:
        health.database_reachable = reachable


UNKNOWN = str(uuid.uuid4())
OVERSIZED = b"x" * (MAX_UPLOAD + FORM_OVERHEAD_BYTES + 1)
# What provokes each status of each route, with the caller's key where the app has keys.
PROVOKED = {
    ("POST", "/api/upload/", 200): lambda client, headers: upload(client, headers=headers),
    ("POST", "/api/upload/", 400): lambda client, headers: upload(client, b"S. No.,Product Name\n1,A\n", headers),
    ("POST", "/api/upload/", 409): conflict,
    ("POST", "/api/upload/", 413): lambda client, headers: upload(client, b"x" * (MAX_UPLOAD + 1), headers),
    ("POST", "/api/upload/", 503): down("insert_request", lambda client, headers: upload(client, headers=headers)),
    ("GET", "/api/output/", 200): own_output,
    ("GET", "/api/output/", 400): output("not-a-uuid"),
    ("GET", "/api/output/", 404): output(UNKNOWN),
    ("GET", "/api/output/", 410): expired(output),
    ("GET", "/api/output/", 503): down("get", output(UNKNOWN)),
    ("GET", "/api/rows/", 200): own_rows,
    ("GET", "/api/rows/", 400): rows(request_id=UNKNOWN, limit=0),
    ("GET", "/api/rows/", 404): rows(request_id=UNKNOWN),
    ("GET", "/api/rows/", 410): expired(lambda request_id: rows(request_id=request_id)),
    ("GET", "/api/rows/", 503): down("get", rows(request_id=UNKNOWN)),
    ("GET", "/api/files/{name}", 200): own_input,
    ("GET", "/api/files/{name}", 404): input_of(UNKNOWN),
    ("GET", "/api/files/{name}", 410): expired(input_of),
    ("GET", "/api/files/{name}", 503): down("get", input_of(UNKNOWN)),
    ("POST", "/api/webhook/", 200): webhook(signed=True),
    ("POST", "/api/webhook/", 401): webhook(signed=False),
    ("POST", "/api/webhook/", 413): webhook(signed=False, body=OVERSIZED),
    ("GET", "/healthz", 200): lambda client, _: client.get("/healthz"),
    ("GET", "/healthz", 503): unhealthy,
}
# With API keys, the same, and a 401 where a key is missing.
KEYED_PROVOKED = {
    **PROVOKED,
    ("POST", "/api/upload/", 401): lambda client, _: upload(client),
    ("GET", "/api/output/", 401): lambda client, _: output(UNKNOWN)(client, {}),
    ("GET", "/api/rows/", 401): lambda client, _: rows(request_id=UNKNOWN)(client, {}),
    ("GET", "/api/files/{name}", 401): lambda client, _: input_of(UNKNOWN)(client, {}),
}


def provoked_statuses(provoked: dict) -> dict[tuple[str, str], set[int]]:
    statuses: dict[tuple[str, str], set[int]] = {}
    for method, path, code in provoked:
        statuses.setdefault((method, path), set()).add(code)
    return statuses


@pytest.mark.parametrize("keyed", [False, True], ids=["without-keys", "with-keys"])
def test_the_documented_statuses_are_exactly_those_provoked(keyed, open_client, keyed_client):
    client = keyed_client if keyed else open_client
    assert documented_statuses(client.app.openapi()) == provoked_statuses(KEYED_PROVOKED if keyed else PROVOKED)


@pytest.mark.parametrize(("method", "path", "code"), sorted(KEYED_PROVOKED))
@pytest.mark.parametrize("keyed", [False, True], ids=["without-keys", "with-keys"])
def test_each_documented_status_is_answered_with_its_documented_envelope(
    keyed, method, path, code, open_client, keyed_client
):
    provoke = (KEYED_PROVOKED if keyed else PROVOKED).get((method, path, code))
    if provoke is None:  # a 401 without keys: nothing answers it, and the other test says it is not documented
        assert code == 401 and not keyed
        return
    client = keyed_client if keyed else open_client
    response = provoke(client, AS_OWNER if keyed else {})
    assert (response.request.method, route_of(client.app, method, response.request.url.path)) == (method, path)
    assert response.status_code == code, response.text
    check_documented(client.app, response)
    if code == 503 and path != "/healthz":
        assert response.headers["retry-after"] == "5"


def test_the_document_declares_the_key_schemes_and_typed_payloads(keyed_client, open_client):
    schema = keyed_client.app.openapi()
    assert schema["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "scheme": "bearer", "description": "One of IMGPIPE_API_KEYS, when set"},
        "APIKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "One of IMGPIPE_API_KEYS, when set",
        },
    }
    keyed = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
        if op.get("security")
    }
    assert keyed == {
        ("/api/upload/", "post"),
        ("/api/output/", "get"),
        ("/api/rows/", "get"),
        ("/api/files/{name}", "get"),
    }
    assert schema["paths"]["/api/files/{name}"]["get"]["security"][0] == {}  # outputs need no key
    schemas = schema["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert '"422"' not in str(schema).replace("'", '"')

    def payload(path, method, code):
        name = schema["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        return schemas[name.rsplit("/", 1)[1]]["properties"]["payload"]

    assert schemas[payload("/api/upload/", "post", "200")["$ref"].rsplit("/", 1)[1]]["required"] == ["request_id"]
    status = schemas[payload("/api/output/", "get", "200")["$ref"].rsplit("/", 1)[1]]
    assert status["required"] == ["request_id", "status", "output_file_url", "progress", "rows_accepted", "webhooks"]
    assert payload("/api/output/", "get", "404") == {"type": "null", "title": "Payload"}
    assert {
        option.get("$ref", "null").rsplit("/", 1)[-1] for option in payload("/api/upload/", "post", "400")["anyOf"]
    } == {
        "CsvProblems",
        "FieldProblems",
        "null",
    }
    open_schema = open_client.app.openapi()
    assert open_schema["paths"]["/api/output/"]["get"]["security"] == []
    assert open_schema["components"]["securitySchemes"] == schema["components"]["securitySchemes"]
