import base64
import json
import uuid

import aiohttp
import pytest

from imgpipe_notifier.adapters.webhook import WebhookSender
from imgpipe_notifier.handlers import retryable, webhook_body
from imgpipe_runtime.netpolicy import NetPolicy
from imgpipe_schemas import Progress, RequestCompleted

SECRET = "whsec_" + base64.b64encode(b"unit test secret").decode()


def test_webhook_body_has_type_timestamp_and_request_data():
    event = RequestCompleted(
        request_id=uuid.uuid4(),
        status="SUCCESS",
        output_file_url="http://127.0.0.1:8000/api/files/x/output.csv",
        progress=Progress(rows_total=1, rows_done=1, images_total=2, images_ok=1, images_failed=1),
        webhook_url="http://hook",
    )
    body = json.loads(webhook_body(event))
    assert body["type"] == "request.completed"
    assert body["data"] == {
        "request_id": str(event.request_id),
        "status": "SUCCESS",
        "output_file_url": "http://127.0.0.1:8000/api/files/x/output.csv",
        "progress": {"rows_total": 1, "rows_done": 1, "images_total": 2, "images_ok": 1, "images_failed": 1},
    }


@pytest.mark.parametrize(
    ("url", "outcome"),
    [
        ("http://[::1", "invalid_url"),
        ("http://hooks..example/h", "invalid_url"),
        ("not a url", "invalid_url"),
        ("ftp://hooks.example/h", "invalid_url"),
        ("http://169.254.169.254/latest", "blocked_address"),
    ],
)
async def test_a_webhook_url_that_can_never_work_is_a_final_outcome_not_an_exception(url, outcome):
    sender = WebhookSender(secret=SECRET, timeout=aiohttp.ClientTimeout(total=2), policy=NetPolicy())
    try:
        answer = await sender.post(url, "msg_1", b"{}")
    finally:
        await sender.close()
    assert answer.startswith(outcome) and not retryable(answer)


@pytest.mark.parametrize(
    ("outcome", "again"),
    [(500, True), (503, True), (408, True), (429, True), ("timeout", True), (400, False), (404, False), (301, False)],
)
def test_which_answers_are_worth_another_attempt(outcome, again):
    assert retryable(outcome) is again
