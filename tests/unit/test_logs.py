"""Lines about a request carry its id (and row) as fields, in both log formats."""

import asyncio
import json
import logging

import pytest

from imgpipe_runtime.logs import about_request, configure_logging
from imgpipe_runtime.settings import LogSettings


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_and_row_bound_around_them(capsys, restore_logging):
    configure_logging("image-worker", LogSettings(IMGPIPE_LOG_JSON=True))
    log = logging.getLogger("imgpipe_image_worker.handlers")
    with about_request("6f1c", row_index=3):
        log.info("image %d failed", 2)
    log.info("not about a request")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert (first["request_id"], first["row_index"], first["event"]) == ("6f1c", 3, "image 2 failed")
    assert first["service"] == "image-worker" and first["level"] == "info"
    assert "request_id" not in second and "row_index" not in second


def test_console_lines_carry_them_too(capsys, restore_logging):
    configure_logging("assembler", LogSettings())
    with about_request("6f1c"):
        logging.getLogger("imgpipe_assembler").warning("re-publishing")
    line = capsys.readouterr().err
    assert "re-publishing" in line and "request_id=6f1c" in line and "row_index" not in line


async def test_concurrent_tasks_keep_their_own_request(capsys, restore_logging):
    configure_logging("notifier", LogSettings(IMGPIPE_LOG_JSON=True))
    log = logging.getLogger("imgpipe_notifier")

    async def deliver(request_id: str) -> None:
        with about_request(request_id):
            await asyncio.sleep(0)
            log.info("delivered")

    await asyncio.gather(*(deliver(f"r{i}") for i in range(5)))
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert sorted(line["request_id"] for line in lines) == [f"r{i}" for i in range(5)]
