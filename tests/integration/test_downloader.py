"""The downloader against a real local HTTP server."""

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imgpipe_image_worker.adapters.downloader import Downloader, FetchFailed
from imgpipe_image_worker.budgets import ByteBudget
from imgpipe_runtime.netpolicy import BlockedAddress, NetPolicy, guarded_session
from tests.waiting import eventually


@pytest.fixture
async def server():
    calls: dict[str, int] = {}
    answering = {"now": 0, "most": 0}
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        calls[name] = calls.get(name, 0) + 1
        if name in ("held", "slow"):  # held: until the test releases it; slow: 0.6 s
            answering["now"] += 1
            answering["most"] = max(answering["most"], answering["now"])
            try:
                await (release.wait() if name == "held" else asyncio.sleep(0.6))
            finally:
                answering["now"] -= 1
        if name == "busy" and calls[name] == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        if name == "down":
            return web.Response(status=503)
        if name == "gone":
            return web.Response(status=404)
        if name == "hop":  # redirects to another port of this machine
            raise web.HTTPFound(f"http://127.0.0.1:{request.url.port + 1}/ok")
        if name == "hop-by-name":
            raise web.HTTPFound(f"http://localhost:{request.url.port + 1}/ok")
        if name == "hop-unicode":  # the same loopback address, spelt with fullwidth digits
            raise web.HTTPFound(f"http://１２７．０．０．１:{request.url.port + 1}/ok")
        if name == "loop":
            raise web.HTTPFound("/loop")
        if name == "relative":
            raise web.HTTPFound("/ok")
        if name == "huge":
            response = web.StreamResponse()  # no Content-Length: the cap must hold while streaming
            await response.prepare(request)
            for _ in range(64):
                await response.write(b"x" * 1024)
            return response
        return web.Response(body=b"image bytes")

    app = web.Application()
    app.router.add_get("/{name}", handle)
    async with TestServer(app, host="127.0.0.1") as test_server:
        test_server.calls, test_server.answering, test_server.release = calls, answering, release
        yield test_server


def downloader(attempts: int = 3, allow: str = "127.0.0.0/8", total_s: float = 5, **connections: int) -> Downloader:
    return Downloader(
        max_bytes=10_000,
        timeout=aiohttp.ClientTimeout(total=total_s, sock_connect=total_s),
        policy=NetPolicy.parse(allow),
        bytes_in_flight=ByteBudget(10_000),
        max_redirects=3,
        attempts=attempts,
        backoff_s=0.01,
        **connections,
    )


async def body(fetcher: Downloader, url: str) -> bytes:
    async with fetcher.fetch(url) as data:
        return data


async def test_429_is_retried_after_the_delay_the_server_asked_for(server):
    fetcher = downloader()
    started = time.monotonic()
    assert await body(fetcher, str(server.make_url("/busy"))) == b"image bytes"
    assert time.monotonic() - started >= 1.0
    assert server.calls["busy"] == 2
    await fetcher.close()


@pytest.mark.parametrize(
    ("name", "code", "calls"), [("down", "http_503", 3), ("gone", "http_404", 1), ("huge", "too_large", 1)]
)
async def test_transient_errors_are_retried_and_permanent_ones_are_not(server, name, code, calls):
    fetcher = downloader()
    with pytest.raises(FetchFailed) as failed:
        await body(fetcher, str(server.make_url(f"/{name}")))
    assert failed.value.code == code
    assert server.calls[name] == calls
    await fetcher.close()


async def test_connection_refused_is_a_transient_connection_error():
    fetcher = downloader(attempts=2)
    with pytest.raises(FetchFailed) as failed:
        await body(fetcher, "http://127.0.0.1:9/nothing")
    assert failed.value.code == "connection_error" and failed.value.transient
    await fetcher.close()


async def test_loopback_is_blocked_unless_allowed(server):
    fetcher = downloader(allow="")
    for url in (str(server.make_url("/ok")), f"http://localhost:{server.port}/ok"):  # literal, and by DNS
        with pytest.raises(FetchFailed) as failed:
            await body(fetcher, url)
        assert failed.value.code == "blocked_address"
    assert "ok" not in server.calls
    await fetcher.close()


async def test_every_redirect_hop_is_checked(server):
    only_this_server = f"127.0.0.1:{server.port}"
    fetcher = downloader(allow=only_this_server)
    assert await body(fetcher, str(server.make_url("/relative"))) == b"image bytes"
    for hop in ("/hop", "/hop-by-name", "/hop-unicode"):  # to another port, and to a name that resolves to loopback
        with pytest.raises(FetchFailed) as failed:
            await body(fetcher, str(server.make_url(hop)))
        assert failed.value.code == "blocked_address"
    with pytest.raises(FetchFailed) as failed:
        await body(fetcher, str(server.make_url("/loop")))
    assert failed.value.code == "too_many_redirects"
    await fetcher.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "not a url",
        "ftp://images.example/x.jpg",
        "https:///x.jpg",
        "http://a..b/x.jpg",
        f"http://{'a' * 64}.com/",
    ],
)
async def test_a_url_that_is_not_an_absolute_http_url_is_an_invalid_url(url):
    """Rows produced straight to Kafka skip ingest's CSV rules: the worker gives them a per-image error."""
    fetcher = downloader()
    with pytest.raises(FetchFailed) as failed:
        await body(fetcher, url)
    assert (failed.value.code, failed.value.transient) == ("invalid_url", False)
    await fetcher.close()


UNICODE_LOOPBACK = [
    "http://１２７．０．０．１:{port}/ok",
    "http://127。0。0。1:{port}/ok",
    "http://①②⑦.0.0.1:{port}/ok",
]


@pytest.mark.parametrize("spelling", UNICODE_LOOPBACK)
async def test_a_host_the_client_normalises_into_a_blocked_literal_is_refused(server, spelling):
    """yarl turns fullwidth digits, ideographic full stops and circled digits into 127.0.0.1."""
    fetcher = downloader(allow="")
    with pytest.raises(FetchFailed) as failed:
        await body(fetcher, spelling.format(port=server.port))
    assert failed.value.code == "blocked_address"
    assert "ok" not in server.calls
    await fetcher.close()


@pytest.mark.parametrize("spelling", UNICODE_LOOPBACK)
async def test_the_guarded_session_itself_refuses_a_blocked_literal(server, spelling):
    """The connector judges the host it connects to, with no check made before the request."""
    async with guarded_session(NetPolicy(), aiohttp.ClientTimeout(total=5)) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as failed:
            await session.get(spelling.format(port=server.port))
        assert isinstance(failed.value.os_error, BlockedAddress)
        with pytest.raises(aiohttp.ClientConnectorDNSError):
            await session.get(str(server.make_url("/ok")))
    assert "ok" not in server.calls


async def test_one_host_gets_at_most_its_connections_and_another_host_is_not_held_up(server):
    fetcher = downloader(connections=10, connections_per_host=2)
    held = [asyncio.ensure_future(body(fetcher, str(server.make_url("/held")))) for _ in range(5)]
    await eventually(lambda: server.answering["now"] == 2, 10, "two requests to the host answering")
    assert await body(fetcher, f"http://localhost:{server.port}/ok") == b"image bytes"  # another host
    assert server.answering["now"] == 2 and not any(fetch.done() for fetch in held)
    server.release.set()
    assert await asyncio.gather(*held) == [b"image bytes"] * 5
    assert server.answering["most"] == 2
    await fetcher.close()


async def test_the_wait_for_a_free_connection_is_not_spent_from_the_sources_timeout(server):
    """One connection, sources that answer in 0.6 s, 1 s per request: the third waits 1.2 s for its turn."""
    fetcher = downloader(attempts=1, total_s=1, connections=1)
    bodies = await asyncio.gather(*(body(fetcher, str(server.make_url("/slow"))) for _ in range(3)))
    assert bodies == [b"image bytes"] * 3 and server.answering["most"] == 1
    await fetcher.close()
