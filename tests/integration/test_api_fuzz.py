"""schemathesis against ingest's own OpenAPI document: no generated request gets a 5xx, and every answer
has a documented status, content type, headers and body."""

import threading

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_ops.processes import free_port
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def api_url(infra):
    from imgpipe_bus import BusSettings
    from imgpipe_runtime.settings import MongoSettings
    from imgpipe_runtime.webhooks import generate_secret

    bus = BusSettings(bootstrap_servers=infra.bootstrap)
    ensure_topics(bus)
    port = free_port()
    app = create_api(
        Settings(
            kafka=bus,
            mongo=MongoSettings(url=infra.mongo_url, database="fuzz"),
            port=port,
            max_upload_bytes=4096,
            webhook_secret=generate_secret(),
        )
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the API to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def api_schema(api_url):
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


def test_no_generated_request_gets_a_server_error(api_schema):
    # Hypothesis driven directly: schemathesis' pytest plugin does not run under this pytest version.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {
        "/api/upload/",
        "/api/output/",
        "/api/rows/",
        "/api/webhook/",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def as_documented(case) -> None:
            response = case.call(timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            )
            case.validate_response(response, checks=CHECKS)

        as_documented()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
