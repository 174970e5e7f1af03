"""The documentation's shell examples, run as written from the project's directory: the README's curl upload
of examples/products.csv against the sample server of `imgpipe samples`, and the kcat recipes of the docs."""

import base64
import json
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from imgpipe_ops.client import wait_until_finished
from imgpipe_ops.processes import free_port, port_open, venv_command
from imgpipe_ops.samples import LocalHttpServer, example_routes
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_runtime.webhooks import verify
from imgpipe_schemas.topics import ROWS_SUBMITTED
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCS = "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
SECRET = "whsec_" + base64.b64encode(b"readme example secret").decode()
SAMPLES_PORT = 9000  # as examples/products.csv names it
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("readme-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={"IMGPIPE_MONGO_DATABASE": f"readme_{uuid.uuid4().hex[:8]}", "IMGPIPE_WEBHOOK_SECRET": SECRET},
    )
    with LocalStack(config) as running:
        yield running


def readme_line(pattern: str) -> str:
    """The one command line of the README and docs that matches ``pattern``."""
    found = [line for line in DOCS.splitlines() if re.search(pattern, line)]
    assert len(found) == 1, f"lines matching {pattern!r}: {found}"
    return found[0].split("  # ")[0]


def run(command: str, stack) -> subprocess.CompletedProcess:
    """A README command with the `make run` addresses replaced by the test stack's."""
    command = command.replace("127.0.0.1:8000", stack.api_url.removeprefix("http://"))
    command = command.replace("127.0.0.1:19092", stack.bootstrap)
    return subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_curl_example_uploads_examples_products_csv_served_by_imgpipe_samples(stack):
    assert not port_open(SAMPLES_PORT), f"port {SAMPLES_PORT} is taken: the README's sample server needs it"
    with LocalHttpServer(routes=example_routes(), port=SAMPLES_PORT) as samples:
        uploaded = run(readme_line(r"^curl -F file=@examples/products\.csv"), stack)
        assert uploaded.returncode == 0, uploaded.stderr
        answer = json.loads(uploaded.stdout)
        assert answer["message"] == "File uploaded successfully"
        request_id = answer["payload"]["request_id"]
        final = wait_until_finished(stack.api_url, request_id, timeout=120)
        assert final["status"] == "SUCCESS"
        assert final["progress"] == {
            "rows_total": 4,
            "rows_done": 4,
            "images_total": 7,
            "images_ok": 6,
            "images_failed": 1,
        }
        status_line = readme_line(r"^curl 'http://127\.0\.0\.1:8000/api/output/\?request_id=")
        shown = run(status_line.replace("e6a4edab-…", request_id), stack)
        assert json.loads(shown.stdout)["payload"]["status"] == "SUCCESS"
        hook = wait_for(lambda: [r for r in samples.received if r.path == "/hook"], 30, "the webhook")[0]
        assert verify(SECRET, hook.body, hook.headers)["data"]["request_id"] == request_id
        assert sorted(path for path in samples.fetched) == sorted(
            f"/photos/{name}.jpg"
            for name in ("hat-front", "hat-side", "scarf", "gloves-pair", "gloves-palm", "boots", "boots-sole")
        )


def test_the_kcat_recipes_read_row_results_and_dead_letter_headers(stack):
    request_id = str(uuid.uuid4())
    poison = {"event_id": str(uuid.uuid4()), "event_type": "row.submitted", "request_id": request_id}
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(ROWS_SUBMITTED.name, key=f"{request_id}:0", value=json.dumps(poison).encode())
    assert producer.flush(10) == 0
    recipe = readme_line(r"imgpipe kcat .* -t imgpipe\.rows\.submitted\.dlq ")
    assert recipe.startswith(".venv/bin/imgpipe kcat ")
    recipe = recipe.replace(".venv/bin/imgpipe", shlex.quote(venv_command("imgpipe")), 1)

    def dead_letter() -> str | None:
        read = run(recipe, stack)
        assert read.returncode == 0, read.stderr
        return read.stdout if f"{request_id}:0" in read.stdout else None

    letters = wait_for(dead_letter, 60, "the dead letter")
    assert "dlq.origin.topic=imgpipe.rows.submitted" in letters and "dlq.exception.class=" in letters
    results = run(
        readme_line(r"imgpipe kcat .* -t imgpipe\.rows\.processed ").replace(
            ".venv/bin/imgpipe", shlex.quote(venv_command("imgpipe")), 1
        ),
        stack,
    )
    assert results.returncode == 0, results.stderr
    assert "row.processed" in results.stdout  # the curl example's results, at least
