"""ingest's REST contract, in-process, against the real broker and database."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.documents import ROWS, row_id, row_results
from imgpipe_runtime.webhooks import generate_secret, sign_headers
from imgpipe_schemas import ImageOptions, ImageResult, RowProcessed
from imgpipe_schemas.topics import REQUESTS_ACCEPTED, ROWS_SUBMITTED
from tests.support.kafka_helpers import consume
from tests.support.openapi import answers_as_documented
from tests.waiting import wait_for

SECRET = generate_secret()
GOOD_CSV = b'S. No.,Product Name,Input Image Urls\n1,A,"http://img.test/1.jpg,http://img.test/2.jpg"\n2,B,http://img.test/3.jpg\n'


@pytest.fixture
def settings(bus_settings, mongo_settings) -> Settings:
    ensure_topics(bus_settings)
    return Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        port=8123,
        max_upload_bytes=10_000,
        fetch_allow="127.0.0.1:9",
        webhook_secret=SECRET,
    )


@pytest.fixture
def client(settings):
    """Every answer it gets is checked against the OpenAPI document (tests/support/openapi.py)."""
    with TestClient(create_api(settings)) as test_client:
        yield answers_as_documented(test_client)


def post_csv(client, data: bytes, **form):
    return client.post("/api/upload/", files={"file": ("p.csv", data, "text/csv")}, data=form)


def test_upload_stores_the_request_and_publishes_one_event_per_row(client, settings):
    response = post_csv(
        client,
        GOOD_CSV,
        webhook_url="http://127.0.0.1:9/h",
        quality="70",
        format="webp",
        max_width="300",
        max_height="200",
        fit="pad",
        background="102030",
        progressive="false",
        metadata="keep",
        keep_gps="true",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["message"]) == ("success", "File uploaded successfully")
    request_id = body["payload"]["request_id"]

    def accepted_status():
        status = client.get("/api/output/", params={"request_id": request_id}).json()
        return status if status["payload"]["status"] != "PENDING" else None

    # Answered once the file is stored; its rows follow in the background.
    status = wait_for(accepted_status, 30, "the rows accepted")
    assert (status["payload"]["status"], status["payload"]["rows_accepted"]) == ("PROCESSING", 2)
    assert status["payload"]["output_file_url"] is None
    assert status["payload"]["progress"] == {
        "rows_total": 2,
        "rows_done": 0,
        "images_total": 3,
        "images_ok": 0,
        "images_failed": 0,
    }
    input_csv = client.get(f"/api/files/{request_id}/input.csv")
    assert input_csv.status_code == 200 and input_csv.content == GOOD_CSV

    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    rows = consume(settings.kafka.bootstrap_servers, ROWS_SUBMITTED, 2, match=mine)
    assert sorted((event.row_index, event.serial, tuple(event.image_urls)) for _, _, event in rows) == [
        (0, 1, ("http://img.test/1.jpg", "http://img.test/2.jpg")),
        (1, 2, ("http://img.test/3.jpg",)),
    ]
    assert {(event.quality, event.output_format) for _, _, event in rows} == {(70, "webp")}
    shaping = ImageOptions(max_width=300, max_height=200, fit="pad", background="102030", progressive=False)
    shaping = shaping.model_copy(update={"metadata": "keep", "keep_gps": True})
    assert {event.image_options for _, _, event in rows} == {shaping}
    accepted = consume(settings.kafka.bootstrap_servers, REQUESTS_ACCEPTED, 1, match=mine)[0][2]
    assert (accepted.rows_total, accepted.images_total, accepted.webhook_url) == (2, 3, "http://127.0.0.1:9/h")


@pytest.mark.parametrize(
    ("quality", "mode"), [("auto", "auto:good"), ("auto:eco", "auto:eco"), ("auto:best", "auto:best"), ("070", None)]
)
def test_a_quality_mode_travels_with_the_rows_and_the_fixed_quality_stays(client, settings, quality, mode):
    response = post_csv(client, GOOD_CSV, quality=quality)
    assert response.status_code == 200
    request_id = response.json()["payload"]["request_id"]
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    rows = consume(settings.kafka.bootstrap_servers, ROWS_SUBMITTED, 2, match=mine)
    expected_quality = 70 if mode is None else settings.default_quality
    assert {(event.quality, event.image_options.quality_mode) for _, _, event in rows} == {(expected_quality, mode)}


@pytest.mark.parametrize(("quality", "mode"), [(None, "auto:good"), ("auto:eco", "auto:eco")])
def test_format_auto_compares_the_formats_at_a_quality_mode(client, settings, quality, mode):
    form = {"format": "auto"} | ({"quality": quality} if quality else {})
    response = post_csv(client, GOOD_CSV, **form)
    assert response.status_code == 200
    request_id = response.json()["payload"]["request_id"]
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    rows = consume(settings.kafka.bootstrap_servers, ROWS_SUBMITTED, 2, match=mine)
    assert {(event.output_format, event.image_options.quality_mode) for _, _, event in rows} == {("auto", mode)}


@pytest.mark.parametrize(
    ("form", "output_format", "shaping"),
    [
        ({"preset": "web"}, "auto", {"max_width": 2048, "max_height": 2048, "quality_mode": "auto:good"}),
        ({"preset": "web", "format": "webp", "max_width": "800"}, "webp", {"max_width": 800, "max_height": 2048}),
        ({"preset": "google-shopping"}, "jpeg", {}),
    ],
)
def test_a_preset_travels_with_the_rows_its_defaults_applied_where_the_request_set_nothing(
    client, settings, form, output_format, shaping
):
    apparel_csv = (
        HEADER.replace(b"\n", b",Apparel\n") + b"1,Shirt,http://img.test/1.jpg,yes\n2,Mug,http://img.test/2.jpg,\n"
    )
    response = post_csv(client, apparel_csv, **form)
    assert response.status_code == 200
    request_id = response.json()["payload"]["request_id"]
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    rows = sorted(
        (event for _, _, event in consume(settings.kafka.bootstrap_servers, ROWS_SUBMITTED, 2, match=mine)),
        key=lambda event: event.row_index,
    )
    expected = ImageOptions(preset=form["preset"], **shaping)
    assert [(event.output_format, event.image_options, event.apparel) for event in rows] == [
        (output_format, expected, True),
        (output_format, expected, False),
    ]
    with MongoClient(settings.mongo.url) as mongo:  # the reconciler re-drives a row from what is stored
        stored = mongo[settings.mongo.database][ROWS].find({"request_id": request_id}, {"apparel": 1}).to_list()
    assert sorted((row["_id"], row.get("apparel")) for row in stored) == [
        (row_id(request_id, 0), True),
        (row_id(request_id, 1), None),
    ]


def test_a_bad_csv_gets_400_listing_every_problem(client):
    response = post_csv(client, b"S. No.,Product Name,Input Image Urls\n0,,nope\n1,B,http://ok.test/a.jpg\n")
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error"
    assert [(e["row"], e["column"]) for e in body["payload"]["errors"]] == [
        (1, "S. No."),
        (1, "Product Name"),
        (1, "Input Image Urls"),
    ]


def csv_file(data: bytes, name: str = "p.csv", content_type: str = "text/csv") -> dict:
    return {"files": {"file": (name, data, content_type)}}


HEADER = b"S. No.,Product Name,Input Image Urls\n"
REJECTED = "the CSV was rejected: 1 problem(s)"


@pytest.mark.parametrize(
    ("request_kwargs", "code", "message", "reason"),
    [
        ({"data": {}}, 400, "invalid request", None),
        (csv_file(b"x" * 10_001), 413, "the file is larger than 10000 bytes", None),
        ({**csv_file(GOOD_CSV), "data": {"webhook_url": "ftp://x"}}, 400, "webhook_url: not an http(s) URL", None),
        (
            {**csv_file(GOOD_CSV), "data": {"webhook_url": "http://１２７．０．０．１:8080/hook"}},
            400,
            "webhook_url: blocked_address: 127.0.0.1:8080 resolves to 127.0.0.1, which is not a public address",
            None,
        ),
        (
            {**csv_file(GOOD_CSV), "data": {"webhook_url": "http://169。254。169。254/latest"}},
            400,
            "webhook_url: blocked_address: 169.254.169.254:80 resolves to 169.254.169.254, "
            "which is not a public address",
            None,
        ),
        (csv_file(b""), 400, REJECTED, "the file is empty"),
        (csv_file(b" \r\n\n"), 400, REJECTED, "the file is empty"),
        (csv_file(HEADER), 400, REJECTED, "the file has a header but no data rows"),
        (csv_file(b"\x89PNG\r\n\x1a\n\x00\x00", "p.png", "image/png"), 400, REJECTED, "the file is binary"),
        (
            csv_file(HEADER + "1,Caf\xe9,http://a.test/1.jpg\n".encode("latin-1")),
            400,
            REJECTED,
            "the file is not UTF-8 text (byte 42)",
        ),
        (
            csv_file(b'{"products": [1, 2]}\n', "p.json", "application/json"),
            400,
            "the CSV was rejected: 3 problem(s)",
            "required column 'S. No.' is missing",
        ),
        (csv_file(HEADER + b'1,A,"http://a.test/1.jpg\n'), 400, REJECTED, "the file is not a readable CSV"),
        (
            csv_file(HEADER + b"1,A,http://a.test/1.jpg,surplus\n"),
            400,
            REJECTED,
            "4 fields, but the header names 3 columns",
        ),
    ],
)
def test_bad_uploads_get_a_clear_4xx_in_the_envelope(client, request_kwargs, code, message, reason):
    response = client.post("/api/upload/", **request_kwargs)
    assert response.status_code == code
    assert response.json()["status"] == "error"
    assert response.json()["message"] == message
    if reason:
        assert response.json()["payload"]["errors"][0]["message"].startswith(reason)


BODY_LIMIT = 10_000 + 64 * 1024


def oversized_body():
    """A multipart body over the limit, sent in chunks without a Content-Length."""
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n\r\n'
    for _ in range(BODY_LIMIT // 8192 + 2):
        yield b"x" * 8192


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_while_it_arrives(client, declared):
    headers = {"content-type": "multipart/form-data; boundary=b"}
    body = b"".join(oversized_body()) if declared else oversized_body()
    response = client.post("/api/upload/", content=body, headers=headers)
    assert response.status_code == 413
    assert response.json() == {
        "status": "error",
        "message": f"the request body is larger than {BODY_LIMIT} bytes",
        "payload": None,
    }


def test_a_large_upload_within_the_limits_is_read_in_chunks(bus_settings, mongo_settings):
    """More rows than one parsing chunk and more bytes than the in-memory spool: every row arrives, in order."""
    ensure_topics(bus_settings)
    rows = [f"{n},Product {n},http://img.test/{n}.jpg,{'d' * 400}" for n in range(1, 2501)]
    data = ("S. No.,Product Name,Input Image Urls,Description\n" + "\n".join(rows) + "\n").encode()
    assert len(data) > 1024 * 1024
    settings = Settings(
        kafka=bus_settings, mongo=mongo_settings, port=8123, max_upload_bytes=2 * 1024 * 1024, webhook_secret=SECRET
    )
    with TestClient(create_api(settings)) as big_client:
        answers_as_documented(big_client)
        response = post_csv(big_client, data)
        assert response.status_code == 200, response.text
        request_id = response.json()["payload"]["request_id"]

        def accepted():
            status = big_client.get("/api/output/", params={"request_id": request_id}).json()["payload"]
            return status if status["rows_accepted"] == 2500 else None

        status = wait_for(accepted, 60, "every row accepted")
        assert (status["progress"]["rows_total"], status["progress"]["images_total"]) == (2500, 2500)
        assert big_client.get(f"/api/files/{request_id}/input.csv").content == data
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    events = consume(bus_settings.bootstrap_servers, ROWS_SUBMITTED, 2500, match=mine)
    assert sorted(event.serial for _, _, event in events) == list(range(1, 2501))


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"quality": "0"}, "quality"),
        ({"quality": "96"}, "quality"),
        ({"quality": "x"}, "quality"),
        ({"quality": "auto:max"}, "quality"),
        ({"quality": "auto:"}, "quality"),
        ({"quality": "7.5"}, "quality"),
        ({"format": "gif"}, "format"),
        ({"max_width": "0"}, "max_width"),
        ({"max_height": "20001"}, "max_height"),
        ({"fit": "stretch"}, "fit"),
        ({"background": "white"}, "background"),
        ({"progressive": "maybe"}, "progressive"),
        ({"metadata": "some"}, "metadata"),
        ({"keep_gps": "true"}, "keep_gps"),
        ({"keep_gps": "true", "metadata": "strip"}, "keep_gps"),
        ({"fit": "pad", "max_width": "100"}, "fit"),
        ({"fit": "cover", "max_height": "100"}, "fit"),
        ({"preset": "ebay"}, "preset"),
        ({"preset": "google-shopping", "format": "avif"}, "format"),
        ({"preset": "amazon", "format": "keep"}, "format"),
    ],
)
def test_quality_format_and_image_options_are_validated(client, form, field):
    response = post_csv(client, GOOD_CSV, **form)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["payload"]["errors"]] == [field]


def test_status_of_unknown_missing_and_malformed_ids(client):
    assert client.get("/api/output/", params={"request_id": str(uuid.uuid4())}).status_code == 404
    assert client.get("/api/output/", params={"request_id": "1234"}).status_code == 400
    missing = client.get("/api/output/")
    assert missing.status_code == 400 and missing.json()["payload"]["errors"][0]["field"] == "request_id"
    assert client.get("/api/files/nope/output.csv").status_code == 404


def test_sample_webhook_receiver_accepts_only_signed_payloads(client, settings):
    body = json.dumps({"type": "request.completed", "data": {}}).encode()
    signed = sign_headers(settings.webhook_secret, "msg_1", body)
    assert client.post("/api/webhook/", content=body, headers=signed).status_code == 200
    assert client.post("/api/webhook/", content=body).status_code == 401
    assert client.post("/api/webhook/", content=body + b" ", headers=signed).status_code == 401


def test_healthz_reports_kafka_and_mongodb(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["payload"] == {"kafka": True, "mongodb": True}


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    assert "/api/upload/" in client.get("/openapi.json").json()["paths"]


def test_a_database_outage_is_503_with_retry_after_not_500(client, monkeypatch):
    from pymongo.errors import AutoReconnect

    async def unreachable(*_):
        raise AutoReconnect("connection is already closed")

    monkeypatch.setattr(client.app.state.store, "get", unreachable)
    response = client.get("/api/output/", params={"request_id": str(uuid.uuid4())})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["status"] == "error"


@pytest.mark.parametrize(
    "webhook_url",
    [
        "http://169.254.169.254/latest",
        "http://localhost:11/h",
        "http://127.0.0.1:10/h",
        "http://[::1]:9/h",
        "http://no-such-host.invalid/h",
    ],
)
def test_a_webhook_url_to_a_blocked_address_is_refused_at_upload(client, webhook_url):
    response = post_csv(client, GOOD_CSV, webhook_url=webhook_url)
    assert response.status_code == 400
    assert response.json()["message"].startswith("webhook_url: blocked_address")


def test_idempotency_key_gives_the_same_request_for_the_same_upload_and_409_for_another(client):
    first = post_csv_with_key(client, GOOD_CSV, "order-42")
    again = post_csv_with_key(client, GOOD_CSV, "order-42")
    assert first.status_code == again.status_code == 200
    assert first.json()["payload"]["request_id"] == again.json()["payload"]["request_id"]
    other = post_csv_with_key(client, GOOD_CSV.replace(b"SKU", b"B").replace(b"2,B", b"2,C"), "order-42")
    assert other.status_code == 409 and other.json()["status"] == "error"
    different_options = post_csv_with_key(client, GOOD_CSV, "order-42", quality="80")
    assert different_options.status_code == 409


def test_a_rejected_upload_does_not_use_up_its_idempotency_key(client):
    assert post_csv_with_key(client, b"S. No.,Product Name,Input Image Urls\n1,,x\n", "k-1").status_code == 400
    assert post_csv_with_key(client, GOOD_CSV, "k-1").status_code == 200


def post_csv_with_key(client, data: bytes, key: str, headers: dict | None = None, **form):
    return client.post(
        "/api/upload/",
        files={"file": ("p.csv", data, "text/csv")},
        data=form,
        headers={"Idempotency-Key": key, **(headers or {})},
    )


@pytest.fixture
def keyed_client(settings):
    with TestClient(create_api(settings.model_copy(update={"api_keys": "k1, k2"}))) as test_client:
        yield answers_as_documented(test_client)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"X-API-Key": "nope"}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"X-API-Key": "k2"}, 200),
        ({"Authorization": "Bearer k1"}, 200),
    ],
)
def test_api_keys_guard_upload_and_status(keyed_client, headers, code):
    upload = keyed_client.post("/api/upload/", files={"file": ("p.csv", GOOD_CSV, "text/csv")}, headers=headers)
    assert upload.status_code == code
    status = keyed_client.get("/api/output/", params={"request_id": str(uuid.uuid4())}, headers=headers)
    assert status.status_code == (401 if code == 401 else 404)
    assert keyed_client.get("/healthz").status_code == 200


def test_an_upload_while_the_broker_is_down_is_stored_and_its_rows_accepted_by_the_next_ingest(settings):
    """Answered once its file is stored; the acceptance that the broker cut short is resumed, once its
    lease ran out, by an ingest that reaches the broker."""
    from imgpipe_bus import BusSettings
    from imgpipe_ops.processes import free_port

    settings = settings.model_copy(update={"accept_lease_s": 1.0, "accept_resume_every_s": 0.2})
    dead_broker = BusSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", delivery_timeout_s=1)
    with TestClient(create_api(settings.model_copy(update={"kafka": dead_broker}))) as offline:
        answers_as_documented(offline)
        response = post_csv(offline, GOOD_CSV)
        assert response.status_code == 200
        request_id = response.json()["payload"]["request_id"]
        status = offline.get("/api/output/", params={"request_id": request_id}).json()["payload"]
        assert (status["status"], status["rows_accepted"]) == ("PENDING", 0)
    with TestClient(create_api(settings)) as online:

        def accepted():
            status = online.get("/api/output/", params={"request_id": request_id}).json()["payload"]
            return status if status["status"] == "PROCESSING" else None

        assert wait_for(accepted, 60, "the acceptance resumed")["rows_accepted"] == 2
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    rows = consume(settings.kafka.bootstrap_servers, ROWS_SUBMITTED, 2, match=mine)
    assert sorted(event.row_index for _, _, event in rows) == [0, 1]


def test_a_file_with_a_problem_on_every_row_gets_a_bounded_answer(client):
    body = HEADER + b"".join(f"{n},A,ftp://a.test/{n}.jpg\n".encode() for n in range(1, 300))
    response = client.post("/api/upload/", **csv_file(body))
    assert response.status_code == 400
    assert response.json()["message"] == "the CSV was rejected: 299 problem(s)"
    payload = response.json()["payload"]
    assert (len(payload["errors"]), payload["errors_total"]) == (100, 299)
    assert len(response.content) < 100 * 200  # at most the listed problems, whatever the file holds


@pytest.mark.parametrize("serial", [str(2**64), "9" * 3000])
def test_a_serial_beyond_64_bits_is_a_400_with_the_reason(client, serial):
    response = client.post("/api/upload/", **csv_file(HEADER + f"{serial},A,http://img.test/1.jpg\n".encode()))
    assert response.status_code == 400
    assert "is larger than 9223372036854775807" in response.json()["payload"]["errors"][0]["message"]


def store_results(settings, request_id: str, results: dict[int, list[ImageResult]]) -> None:
    """Row results as the assembler stores them."""
    with MongoClient(settings.mongo.url) as mongo:
        rows = mongo[settings.mongo.database][ROWS]
        for row_index, images in results.items():
            result = RowProcessed(request_id=uuid.UUID(request_id), row_index=row_index, images=images)
            rows.update_one({"_id": row_id(request_id, row_index)}, {"$set": row_results(result, datetime.now(UTC))})


def rows_page(client, request_id: str, headers: dict | None = None, **params):
    response = client.get("/api/rows/", params={"request_id": request_id, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["payload"]


def test_rows_are_paged_in_input_order_with_each_images_outcome(client, settings):
    body = HEADER + b"".join(
        f'{n},P{n},"http://img.test/{n}a.jpg,http://img.test/{n}b.jpg"\n'.encode() for n in range(1, 8)
    )
    request_id = post_csv(client, body).json()["payload"]["request_id"]
    # The rows are stored in the background once the upload is answered: the page shows those accepted.
    wait_for(
        lambda: client.get("/api/output/", params={"request_id": request_id}).json()["payload"]["rows_accepted"] == 7,
        30,
        "every row accepted",
    )
    first = rows_page(client, request_id, limit=3)
    assert (first["total"], first["offset"], first["limit"], first["more"]) == (7, 0, 3, True)
    assert first["input_file_url"] == f"http://127.0.0.1:8123/api/files/{request_id}/input.csv"
    assert [
        (row["row_index"], row["serial"], row["product_name"], row["done"], row["images"]) for row in first["rows"]
    ] == [
        (0, 1, "P1", False, []),
        (1, 2, "P2", False, []),
        (2, 3, "P3", False, []),
    ]
    ok = ImageResult(
        source_url="http://img.test/2a.jpg",
        output_url="http://127.0.0.1:8123/api/files/x.jpg",
        bytes_in=900,
        bytes_out=300,
        width=640,
        height=480,
        quality=62,
        score=0.9912,
        checks=["640×480 is below 1000 px on its longest side"],
    )
    failed = ImageResult(source_url="http://img.test/2b.jpg", error_code="http_404", error_message="Not Found")
    store_results(settings, request_id, {1: [ok, failed], 5: [ok, ok.model_copy(update={"source_url": "b"})]})
    assert [row["done"] for row in rows_page(client, request_id, offset=0, limit=7)["rows"]] == [
        False,
        True,
        False,
        False,
        False,
        True,
        False,
    ]
    last = rows_page(client, request_id, offset=6, limit=3)
    assert ([row["serial"] for row in last["rows"]], last["total"], last["more"]) == ([7], 7, False)
    assert rows_page(client, request_id, offset=7)["rows"] == []

    failing = rows_page(client, request_id, failed="true")
    assert (failing["total"], failing["more"], [row["serial"] for row in failing["rows"]]) == (None, False, [2])
    assert failing["rows"][0]["images"] == [
        {
            "source_url": "http://img.test/2a.jpg",
            "output_url": "http://127.0.0.1:8123/api/files/x.jpg",
            "error_code": None,
            "error_message": None,
            "retryable": False,
            "bytes_in": 900,
            "bytes_out": 300,
            "kept_source": False,
            "width": 640,
            "height": 480,
            "quality": 62,
            "score": 0.9912,
            "checks": ["640×480 is below 1000 px on its longest side"],
        },
        {
            "source_url": "http://img.test/2b.jpg",
            "output_url": None,
            "error_code": "http_404",
            "error_message": "Not Found",
            "retryable": False,
            "bytes_in": 0,
            "bytes_out": 0,
            "kept_source": False,
            "width": None,
            "height": None,
            "quality": None,
            "score": None,
            "checks": None,
        },
    ]
    assert rows_page(client, request_id, failed="true", offset=1)["rows"] == []
    store_results(settings, request_id, {n: [failed] for n in (3, 4, 6)})
    pages = [rows_page(client, request_id, failed="true", offset=offset, limit=2) for offset in (0, 2)]
    assert [([row["serial"] for row in page["rows"]], page["more"]) for page in pages] == [
        ([2, 4], True),
        ([5, 7], False),
    ]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"offset": "-1"}, {"failed": "maybe"}])
def test_rows_page_bounds_are_a_400(client, params):
    response = client.get("/api/rows/", params={"request_id": str(uuid.uuid4()), **params})
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["payload"]["errors"]] == [next(iter(params))]


def test_rows_follow_the_api_key_rules(keyed_client):
    request_id = post_csv_with_key(keyed_client, GOOD_CSV, "rows-1", headers={"X-API-Key": "k1"}).json()["payload"][
        "request_id"
    ]
    assert rows_page(keyed_client, request_id, {"X-API-Key": "k1"})["total"] == 2
    other = keyed_client.get("/api/rows/", params={"request_id": request_id}, headers={"X-API-Key": "k2"})
    unknown = keyed_client.get("/api/rows/", params={"request_id": str(uuid.uuid4())}, headers={"X-API-Key": "k2"})
    assert other.status_code == unknown.status_code == 404
    assert keyed_client.get("/api/rows/", params={"request_id": request_id}).status_code == 401


def test_the_status_page_is_one_open_shell_for_every_id(keyed_client):
    request_id = post_csv_with_key(keyed_client, GOOD_CSV, "page-1", headers={"X-API-Key": "k1"}).json()["payload"][
        "request_id"
    ]
    unknown = str(uuid.uuid4())
    page, other = keyed_client.get(f"/requests/{request_id}"), keyed_client.get(f"/requests/{unknown}")
    assert page.status_code == other.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.replace(request_id, unknown) == other.text  # tells nothing of whether the id is taken
    policy = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy
        and "connect-src 'self'" in policy
        and "img-src 'self' http://127.0.0.1:8123" in policy
    )
    assert page.headers["referrer-policy"] == "no-referrer"
    assert keyed_client.get(f"/requests/{request_id.upper()}").text == page.text
    for asset, kind in [("status-page.js", "javascript"), ("status-page.css", "text/css")]:
        assert f"../static/{asset}" in page.text
        served = keyed_client.get(f"/static/{asset}")
        assert served.status_code == 200 and kind in served.headers["content-type"]
    malformed = keyed_client.get("/requests/<script>")
    assert malformed.status_code == 404 and "<script>" not in malformed.text and "&lt;script&gt;" in malformed.text


def test_a_get_with_a_body_over_the_limit_is_answered_as_without_it(client):
    """The body limit guards the routes that read a body: a GET never reads one."""
    response = client.request(
        "GET", "/api/output/", params={"request_id": str(uuid.uuid4())}, content=b"x" * (BODY_LIMIT + 1)
    )
    assert response.status_code == 404
