"""A webhook subscriber that accepts connections and never answers, against another subscriber, over real
local sockets: the slow one holds only its own few connections, the other's webhook is delivered at once."""

import asyncio
import base64

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imgpipe_notifier.adapters.webhook import WebhookSender
from imgpipe_notifier.settings import Settings
from imgpipe_runtime.netpolicy import NetPolicy
from tests.support.stalling import stalling  # noqa: F401 (a fixture)
from tests.waiting import eventually

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
SECRET = "whsec_" + base64.b64encode(b"integration test secret").decode()


@pytest.fixture
async def subscriber():
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server


def production_sender() -> WebhookSender:
    """As main.build_app makes it, with the settings' defaults."""
    return WebhookSender(
        secret=SECRET,
        timeout=aiohttp.ClientTimeout(
            total=DEFAULTS["webhook_timeout_s"], sock_connect=DEFAULTS["webhook_connect_timeout_s"]
        ),
        policy=NetPolicy.parse("127.0.0.0/8"),
        connections_per_host=DEFAULTS["webhook_connections_per_host"],
    )


async def test_a_subscriber_that_never_answers_does_not_hold_up_another_subscribers_webhook(stalling, subscriber):  # noqa: F811
    """More attempts to the slow subscriber than a default HTTP client pool holds (100)."""
    sender = production_sender()
    per_host = DEFAULTS["webhook_connections_per_host"]
    [port] = await stalling.start(1)
    stalled = [
        asyncio.ensure_future(sender.post(f"http://127.0.0.1:{port}/hook", f"msg_{n}", b"{}")) for n in range(120)
    ]
    await eventually(lambda: stalling.total_open >= per_host, 30, "attempts to the slow subscriber on the wire")

    answered = await asyncio.wait_for(sender.post(str(subscriber.make_url("/hook")), "msg_other", b"{}"), 60)

    assert answered == 204
    assert not any(attempt.done() for attempt in stalled), "the slow subscriber's attempts were still waiting"
    assert stalling.peak <= per_host, "the slow subscriber held no more than its host's connections"

    await stalling.stop()
    outcomes = await asyncio.wait_for(asyncio.gather(*stalled), 60)
    await sender.close()
    assert all(isinstance(outcome, str) for outcome in outcomes), "no answer: each attempt says why"
