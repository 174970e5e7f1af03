"""One request's stalling sources against another request's good ones, over real local sockets: sources
that accept a connection and never answer hold only their own request's share of the worker's
connections, so the other request's images are fetched at once instead of timing out behind them."""

import asyncio
import uuid

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imgpipe_image_worker.adapters.downloader import Downloader
from imgpipe_image_worker.budgets import ByteBudget
from imgpipe_image_worker.compress import Compressed, Listing
from imgpipe_image_worker.handlers import Adapters, process_row
from imgpipe_image_worker.settings import Settings
from imgpipe_image_worker.shares import KeyedSlots, request_share
from imgpipe_image_worker.sources import SharedSources
from imgpipe_runtime.netpolicy import NetPolicy
from imgpipe_schemas import ImageOptions, RowSubmitted
from tests.support.blob_fakes import CodecWrittenBlobs
from tests.support.stalling import stalling  # noqa: F401 (a fixture)
from tests.waiting import eventually

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}


@pytest.fixture
async def good_server():
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"image bytes")

    app = web.Application()
    app.router.add_get("/{name}", image)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server


def production_worker() -> tuple[Adapters, Downloader]:
    """The downloader and adapters as main.build_app makes them, with the settings' defaults."""
    fetcher = Downloader(
        max_bytes=10_000,
        timeout=aiohttp.ClientTimeout(
            total=DEFAULTS["fetch_total_timeout_s"], sock_connect=DEFAULTS["fetch_connect_timeout_s"]
        ),
        policy=NetPolicy.parse("127.0.0.0/8"),
        bytes_in_flight=ByteBudget(10_000_000),
        attempts=DEFAULTS["fetch_attempts"],
        connections=DEFAULTS["fetch_connections"],
        connections_per_host=DEFAULTS["fetch_connections_per_host"],
    )
    adapters = Adapters(
        fetch=fetcher.fetch,
        compress=compressed,
        blobs=CodecWrittenBlobs(),
        producer=None,
        public_base_url="http://api",
        sources=SharedSources(),
        image_budget_s=DEFAULTS["image_budget_s"],
        row_budget_s=DEFAULTS["row_budget_s"],
        request_fetches=KeyedSlots(request_share(DEFAULTS["fetch_connections"])),
    )
    return adapters, fetcher


async def compressed(
    data: bytes, quality: int, output_format: str, stem: str, options: ImageOptions, listing: Listing
) -> Compressed:
    return Compressed(None, "jpg", "image/jpeg", len(data))


def row(request_id: uuid.UUID, index: int, urls: list[str]) -> RowSubmitted:
    return RowSubmitted(request_id=request_id, row_index=index, serial=index, product_name="P", image_urls=urls)


async def test_a_request_whose_sources_stall_does_not_starve_another_requests_images(stalling, good_server):  # noqa: F811
    """Request A: 8 rows of 20 sources spread over 8 hosts that never answer; then request B: 2 rows of 3
    good images. B's images are fetched while A's still stall, and A holds no more than its share."""
    worker, fetcher = production_worker()
    share = request_share(DEFAULTS["fetch_connections"])
    ports = await stalling.start(8)
    stalled = uuid.uuid4()
    stalled_rows = [
        row(stalled, r, [f"http://127.0.0.1:{ports[i % len(ports)]}/{r}-{i}.jpg" for i in range(20)]) for r in range(8)
    ]
    stalling_work = [asyncio.ensure_future(process_row(each, worker)) for each in stalled_rows]
    await eventually(lambda: stalling.total_open >= share, 30, "request A's fetches holding connections")

    other = uuid.uuid4()
    good_rows = [row(other, r, [str(good_server.make_url(f"/{r}-{i}.jpg")) for i in range(3)]) for r in range(2)]
    results = await asyncio.wait_for(asyncio.gather(*(process_row(each, worker) for each in good_rows)), 120)

    assert [image.error_code for result in results for image in result.images] == [None] * 6
    assert not any(task.done() for task in stalling_work), "request A's sources were still stalling"
    assert stalling.peak <= share, "one request holds no more than its share of the connections"
    assert stalling.peak_per_port <= DEFAULTS["fetch_connections_per_host"]

    await stalling.stop()  # A's connections drop and its sources refuse: its rows end with its own errors
    stalled_results = await asyncio.wait_for(asyncio.gather(*stalling_work), 120)
    await fetcher.close()
    assert {image.error_code for result in stalled_results for image in result.images} == {"connection_error"}
