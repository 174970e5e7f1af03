"""The image worker's row handling with in-memory adapters: each distinct source of a request is
fetched and compressed once, wherever it appears, and a transient failure is tried again."""

import uuid

from imgpipe_image_worker.handlers import process_row
from imgpipe_image_worker.sources import SharedSources
from imgpipe_schemas import ImageOptions
from tests.support.image_worker_fakes import FakeSources, adapters, row


async def test_a_source_repeated_across_rows_is_fetched_and_compressed_once():
    fake = FakeSources()
    wired = adapters(fake)
    request = uuid.uuid4()
    first = await process_row(row(request, 0, ["http://a/x.jpg", "http://a/y.jpg", "http://a/x.jpg"]), wired)
    second = await process_row(row(request, 1, ["http://a/x.jpg"]), wired)
    assert sorted(fake.fetched) == ["http://a/x.jpg", "http://a/y.jpg"] and fake.compressed == 2
    x_output = first.images[0].output_url
    assert x_output and first.images[2].output_url == x_output == second.images[0].output_url
    assert first.images[1].output_url != x_output


async def test_another_request_or_quality_is_its_own_work():
    fake = FakeSources()
    wired = adapters(fake)
    await process_row(row(uuid.uuid4(), 0, ["http://a/x.jpg"]), wired)
    await process_row(row(uuid.uuid4(), 0, ["http://a/x.jpg"]), wired)
    request = uuid.uuid4()
    await process_row(row(request, 0, ["http://a/x.jpg"], quality=30), wired)
    await process_row(row(request, 1, ["http://a/x.jpg"], quality=80), wired)
    assert len(fake.fetched) == 4


async def test_other_image_options_are_their_own_work():
    """A direct producer may ask for two sizes of one source in one request: each is made and stored."""
    fake = FakeSources()
    wired = adapters(fake)
    request = uuid.uuid4()
    small = await process_row(row(request, 0, ["http://a/x.jpg"], max_width=100), wired)
    large = await process_row(row(request, 1, ["http://a/x.jpg"], max_width=800), wired)
    again = await process_row(row(request, 2, ["http://a/x.jpg"], max_width=800), wired)
    assert len(fake.fetched) == 2 and fake.options == [ImageOptions(max_width=100), ImageOptions(max_width=800)]
    assert small.images[0].output_url != large.images[0].output_url == again.images[0].output_url


async def test_with_a_preset_a_source_is_checked_as_the_image_it_is_in_each_row():
    """Its checks depend on whether it is a row's main image and the row's product apparel: shared only
    between places its marketplace's rules do not tell apart."""
    fake = FakeSources()
    wired = adapters(fake)
    request = uuid.uuid4()
    first = await process_row(row(request, 0, ["http://a/x.jpg", "http://a/y.jpg"], preset="amazon"), wired)
    second = await process_row(row(request, 1, ["http://a/y.jpg", "http://a/x.jpg"], preset="amazon"), wired)
    third = await process_row(row(request, 2, ["http://a/x.jpg"], apparel=True, preset="amazon"), wired)
    again = await process_row(row(request, 3, ["http://a/z.jpg", "http://a/x.jpg"], preset="amazon"), wired)
    assert [image.checks for image in first.images] == [["main=True apparel=False"], ["main=False apparel=False"]]
    assert [image.checks for image in second.images] == [["main=True apparel=False"], ["main=False apparel=False"]]
    assert third.images[0].checks == ["main=True apparel=True"]
    assert again.images[1].output_url == second.images[1].output_url  # x as a second image: made once
    assert fake.compressed == 6  # x three ways, y two, z once


async def test_a_transient_failure_is_not_shared_with_later_positions():
    fake = FakeSources(transient={"http://a/slow.jpg"})
    wired = adapters(fake)
    request = uuid.uuid4()
    failed = await process_row(row(request, 0, ["http://a/slow.jpg"]), wired)
    assert failed.images[0].retryable
    again = await process_row(row(request, 1, ["http://a/slow.jpg"]), wired)
    assert again.images[0].ok and fake.fetched == ["http://a/slow.jpg", "http://a/slow.jpg"]


async def test_a_cancelled_row_does_not_cancel_another_waiting_for_the_same_source():
    import asyncio

    from imgpipe_schemas import ImageResult

    sources = SharedSources()
    release = asyncio.Event()

    async def slow() -> ImageResult:
        await release.wait()
        return ImageResult(source_url="http://a/x.jpg", output_url="http://api/x.jpg")

    first = asyncio.ensure_future(sources.once("k", slow))
    second = asyncio.ensure_future(sources.once("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert (await second).output_url == "http://api/x.jpg"
    assert first.cancelled()
