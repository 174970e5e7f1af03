import json
import uuid

from imgpipe_notifier.handlers import webhook_body
from imgpipe_schemas import Progress, RequestCompleted


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
