"""The image worker's time and memory budgets against a real local HTTP server: sources that drip, redirect
in a long chain or answer 503 over and over end within their budget with their own error, and the
worker's downloads never hold more source bytes than its memory budget."""

import asyncio
import gzip
import uuid
from collections.abc import Awaitable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imgpipe_image_worker.adapters.downloader import Downloader, FetchFailed
from imgpipe_image_worker.budgets import ByteBudget
from imgpipe_image_worker.compress import Compressed, Listing
from imgpipe_image_worker.handlers import Adapters, process_row
from imgpipe_image_worker.shares import KeyedSlots
from imgpipe_image_worker.sources import SharedSources
from imgpipe_runtime.netpolicy import NetPolicy
from imgpipe_schemas import ImageOptions, RowProcessed, RowSubmitted
from tests.support.blob_fakes import CodecWrittenBlobs

CAP = 10_000
SIZED = 4_000


@pytest.fixture
async def server():
    calls: dict[str, int] = {}

    async def drip(request: web.Request) -> web.StreamResponse:
        """A body of 1000 bytes, one byte every 50 ms: each read succeeds, the whole takes 50 s."""
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b"x")
            await asyncio.sleep(0.05)
        return response

    async def chain(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        raise web.HTTPFound(f"/chain/{int(request.match_info['hop']) + 1}")

    async def unavailable(request: web.Request) -> web.Response:
        calls["unavailable"] = calls.get("unavailable", 0) + 1
        return web.Response(status=503, headers={"Retry-After": "1"})

    async def streamed(request: web.Request) -> web.StreamResponse:
        """No Content-Length: the downloader cannot know the size before it has read the body."""
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(int(request.match_info["kib"])):
            await response.write(b"x" * 1024)
        return response

    def answer(body: bytes, **headers: str):
        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=body, headers=headers)

        return handle

    app = web.Application()
    app.router.add_get("/ok", answer(b"image bytes"))
    app.router.add_get("/drip", drip)
    app.router.add_get("/chain/{hop}", chain)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/sized/{n}", answer(b"s" * SIZED))
    app.router.add_get("/streamed/{kib}", streamed)
    app.router.add_get("/declared-huge", answer(b"h" * (CAP + 1)))
    app.router.add_get("/gzipped", answer(gzip.compress(b"\0" * 9_000), **{"Content-Encoding": "gzip"}))
    async with TestServer(app, host="127.0.0.1") as test_server:
        test_server.calls = calls
        yield test_server


def downloader(budget: ByteBudget | None = None, attempts: int = 20) -> Downloader:
    """Timeouts as in production: 30 s per request, so only the budgets can end these sources early."""
    return Downloader(
        max_bytes=CAP,
        timeout=aiohttp.ClientTimeout(total=30, sock_connect=5),
        policy=NetPolicy.parse("127.0.0.0/8"),
        bytes_in_flight=budget or ByteBudget(CAP),
        max_redirects=100,
        attempts=attempts,
        backoff_s=0.01,
    )


async def compressed(
    data: bytes, quality: int, output_format: str, stem: str, options: ImageOptions, listing: Listing
) -> Compressed:
    return Compressed(None, "jpg", "image/jpeg", len(data))


def worker(fetcher: Downloader, image_budget_s: float, row_budget_s: float) -> Adapters:
    return Adapters(
        fetch=fetcher.fetch,
        compress=compressed,
        blobs=CodecWrittenBlobs(),
        producer=None,
        public_base_url="http://api",
        sources=SharedSources(),
        image_budget_s=image_budget_s,
        row_budget_s=row_budget_s,
        request_fetches=KeyedSlots(50),
    )


async def finished(work: Awaitable[RowProcessed]) -> RowProcessed:
    """The row of sources that would stall it for ever but for a budget: the budget's error in the outcome
    is what the tests assert (how long it took is the bench's to measure); a hang fails the test."""
    return await asyncio.wait_for(work, timeout=60)


def row(server: TestServer, *paths: str) -> RowSubmitted:
    urls = [str(server.make_url(path)) for path in paths]
    return RowSubmitted(request_id=uuid.uuid4(), row_index=0, serial=1, product_name="P", image_urls=urls)


@pytest.mark.parametrize("path", ["/drip", "/chain/0"])
async def test_a_slow_source_ends_within_the_image_budget_with_its_own_error(server, path):
    fetcher = downloader()
    result = await finished(process_row(row(server, "/ok", path), worker(fetcher, 1.0, 60)))
    await fetcher.close()
    ok, slow = result.images
    assert ok.ok
    assert (slow.error_code, slow.retryable) == ("time_budget_exceeded", True)
    assert "image's time budget of 1 s ran out while fetching" in slow.error_message


async def test_a_source_answering_503_stops_being_retried_when_the_next_wait_would_outlast_the_budget(server):
    """Retry-After 1 s with a budget of 2.5 s: attempts at 0, 1 and 2 s; the fourth would start past it."""
    fetcher = downloader()
    result = await finished(process_row(row(server, "/unavailable"), worker(fetcher, 2.5, 60)))
    await fetcher.close()
    assert (result.images[0].error_code, result.images[0].retryable) == ("http_503", True)
    assert server.calls["unavailable"] == 3


async def test_a_row_of_slow_sources_is_reported_within_the_row_budget(server):
    fetcher = downloader()
    slow_row = row(server, "/drip", "/chain/0", "/unavailable", "/ok")
    result = await finished(process_row(slow_row, worker(fetcher, 30, 1.5)))
    await fetcher.close()
    *slow, ok = result.images
    assert ok.ok
    assert [image.error_code for image in slow] == ["time_budget_exceeded"] * 3
    assert all("row's time budget of 1.5 s" in image.error_message for image in slow)


async def test_concurrent_downloads_never_hold_more_than_the_memory_budget(server):
    """Each source is held for a while after its download, as while it waits for a codec process."""
    budget = ByteBudget(3 * SIZED)
    fetcher = downloader(budget)
    held = most = 0

    async def use(n: int) -> None:
        nonlocal held, most
        async with fetcher.fetch(str(server.make_url(f"/sized/{n}"))) as data:
            held += len(data)
            most = max(most, held)
            await asyncio.sleep(0.05)
            held -= len(data)

    await asyncio.wait_for(asyncio.gather(*(use(n) for n in range(12))), timeout=20)
    await fetcher.close()
    assert most == 3 * SIZED, "never more than the budget, and the budget was used up"
    assert budget.peak == 3 * SIZED and budget.in_use == 0


async def test_an_undeclared_length_reserves_the_cap_and_keeps_only_what_it_read(server):
    budget = ByteBudget(CAP)
    fetcher = downloader(budget)
    for path in ("/streamed/3", "/gzipped"):  # a decoded body's length is not its Content-Length
        async with fetcher.fetch(str(server.make_url(path))) as data:
            assert budget.in_use == len(data) and len(data) in (3 * 1024, 9_000)
    await fetcher.close()
    assert budget.peak == CAP and budget.in_use == 0


async def test_an_image_larger_than_the_whole_budget_gets_the_cap_error_and_blocks_nothing(server):
    budget = ByteBudget(CAP)
    fetcher = downloader(budget, attempts=1)

    async def fetched(path: str) -> bytes | str:
        try:
            async with fetcher.fetch(str(server.make_url(path))) as data:
                return data
        except FetchFailed as exc:
            return exc.code

    paths = ["/streamed/64", "/declared-huge", "/ok", "/streamed/64", "/ok"]
    outcomes = await asyncio.wait_for(asyncio.gather(*(fetched(path) for path in paths)), timeout=20)
    await fetcher.close()
    assert outcomes == ["too_large", "too_large", b"image bytes", "too_large", b"image bytes"]
    assert budget.in_use == 0


async def test_an_image_waiting_for_the_memory_budget_ends_within_its_time_budget(server):
    budget = ByteBudget(CAP)
    fetcher = downloader(budget)
    everything = await budget.reserve(CAP)
    result = await finished(process_row(row(server, "/ok"), worker(fetcher, 0.5, 60)))
    everything.release()
    await fetcher.close()
    assert result.images[0].error_code == "time_budget_exceeded" and budget.in_use == 0
