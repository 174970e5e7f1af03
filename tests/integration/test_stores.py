import csv
import io
import uuid

import pytest

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.handlers import Adapters, record_results
from imgpipe_bus import EventProducer, ensure_topics
from imgpipe_image_worker.adapters.codec_pool import CodecPool
from imgpipe_image_worker.compress import Encoding
from imgpipe_ops.samples import photo_like_jpeg
from imgpipe_runtime.blob_directory import DirectoryBlobStore
from imgpipe_runtime.blobs import GridFsBlobStore, open_blob_store
from imgpipe_runtime.settings import BlobSettings
from imgpipe_schemas import ImageResult, RowProcessed
from imgpipe_schemas.topics import REQUESTS_COMPLETED
from tests.support.kafka_helpers import consume
from tests.support.uploads import store_upload


@pytest.fixture(params=["gridfs", "directory"])
def blob_store(request, db, tmp_path):
    """Both backends, through the same tests."""
    return open_blob_store(BlobSettings(store=request.param, dir=tmp_path / "blobs"), db)


async def read(blobs, name: str) -> tuple[bytes, str] | None:
    reader = await blobs.open(name)
    if reader is None:
        return None
    data = b"".join([chunk async for chunk in reader.chunks()])
    assert len(data) == reader.length
    return data, reader.content_type


async def test_blobs_are_stored_replaced_and_missing_ones_are_none(blob_store):
    await blob_store.put("r/images/0-0.jpg", b"first", "image/jpeg")
    await blob_store.put("r/images/0-0.jpg", b"second", "image/jpeg")
    assert await read(blob_store, "r/images/0-0.jpg") == (b"second", "image/jpeg")
    assert await read(blob_store, "r/nothing") is None


async def test_a_blob_of_several_chunks_is_replaced_whole_and_read_from_a_file_where_it_stands(blob_store):
    large = bytes(range(256)) * 3000  # three GridFS chunks
    await blob_store.put("r/input.csv", large, "text/csv")
    assert await read(blob_store, "r/input.csv") == (large, "text/csv")
    source = io.BytesIO(b"header to skip|short")
    source.seek(len(b"header to skip|"))
    await blob_store.put("r/input.csv", source, "text/csv")
    assert (await read(blob_store, "r/input.csv"))[0] == b"short"
    await blob_store.put("r/input.csv", b"", "text/csv")
    reader = await blob_store.open("r/input.csv")
    assert (reader.length, [chunk async for chunk in reader.chunks()]) == (0, [])


@pytest.mark.parametrize(
    "name", ["../escape.jpg", "r/../../escape.jpg", "/etc/passwd", "r//x.jpg", "r/./x.jpg", "", "r\\x"]
)
async def test_a_name_that_could_leave_the_blob_directory_is_never_a_file(blob_store, name, tmp_path):
    assert await blob_store.open(name) is None
    if isinstance(blob_store, DirectoryBlobStore):
        with pytest.raises(ValueError):
            await blob_store.put(name, b"x", "image/jpeg")


async def test_an_image_compressed_in_a_pool_process_is_stored_there_or_comes_back(blob_store):
    """With a directory the codec process writes the file; with GridFS the bytes come back to be put."""
    pool = CodecPool(processes=1, encoding=Encoding(), writer=blob_store.writer())
    try:
        output = await pool.compress(photo_like_jpeg(300, 200, seed=1), 50, "jpeg", "r/images/0-0")
    finally:
        pool.close()
    if isinstance(blob_store, DirectoryBlobStore):
        assert output.data is None
    else:
        assert len(output.data) == output.length
        await blob_store.put("r/images/0-0.jpg", output.data, output.content_type)
    data, content_type = await read(blob_store, "r/images/0-0.jpg")
    assert (len(data), content_type) == (output.length, "image/jpeg")


def result(request_id: str, row: int, ok: bool) -> RowProcessed:
    image = (
        ImageResult(source_url=f"http://in/{row}", output_url=f"http://out/{row}", bytes_in=9, bytes_out=3)
        if ok
        else ImageResult(source_url=f"http://in/{row}", error_code="http_404", error_message="gone")
    )
    return RowProcessed(request_id=uuid.UUID(request_id), row_index=row, images=[image])


async def test_duplicated_results_count_once_and_the_request_completes_once(db, bus_settings):
    ensure_topics(bus_settings)
    request_id = str(uuid.uuid4())
    requests = await store_upload(
        db, request_id, b"S. No.,Product Name,Input Image Urls\n1,A,http://in/0\n2,B,http://in/1\n3,C,http://in/2\n"
    )
    await requests.mark_processing(request_id)
    store, blobs, producer = ProgressStore(db), GridFsBlobStore(db), EventProducer(bus_settings)
    deliver = lambda batch: record_results(  # noqa: E731
        batch, Adapters(store=store, blobs=blobs, producer=producer, public_base_url="http://api")
    )
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    await store.record_publication(request_id, [0, 1, 2], [(0, 7), (1, 7), (0, 8)])
    assert await store.published_positions(request_id) == {0: (0, 7), 1: (1, 7), 2: (0, 8)}
    try:
        await deliver([result(request_id, 0, True), result(request_id, 0, True)])
        progress = await requests.progress(await requests.get(request_id))
        assert (progress.rows_done, progress.images_ok, progress.images_failed) == (1, 1, 0)
        await deliver([result(request_id, 2, False), result(request_id, 0, False)])
        await deliver([result(request_id, 1, True)])
        await deliver([result(request_id, 1, True), result(request_id, 2, False)])

        request = await requests.get(request_id)
        assert request["status"] == "SUCCESS"
        assert request["progress"] == {
            "rows_total": 3,
            "rows_done": 3,
            "images_total": 3,
            "images_ok": 2,
            "images_failed": 1,
        }
        table = list(csv.reader(io.StringIO((await read(blobs, request["output_file"]))[0].decode())))
        assert [row[0] for row in table[1:]] == ["1", "2", "3"]
        assert [row[3] for row in table[1:]] == ["http://out/0", "http://out/1", ""]
        completed = consume(bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 1, match=mine)[0][2]
        assert completed.event_type == "request.completed"
        assert request["output_file"] == f"{request_id}/output-{request['output_token']}.csv"
        assert completed.output_file_url == f"http://api/api/files/{request['output_file']}"
        assert str(completed.event_id) == request["completion_event_id"]
        assert await store.published_positions(request_id) == {}  # finished: never re-driven

        # A replayed row that now succeeds replaces its error and the request is announced again.
        await deliver([result(request_id, 2, True)])
    finally:
        await producer.close()
    request = await requests.get(request_id)
    assert request["progress"]["images_ok"] == 3 and request["progress"]["images_failed"] == 0
    table = list(csv.reader(io.StringIO((await read(blobs, request["output_file"]))[0].decode())))
    assert [row[3] for row in table[1:]] == ["http://out/0", "http://out/1", "http://out/2"]
    events = consume(bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 2, match=mine)
    assert [event.event_type for _, _, event in events] == ["request.completed", "request.updated"]
    assert events[0][2].event_id != events[1][2].event_id


async def test_a_requests_files_are_deleted_by_their_prefix_and_no_other(blob_store):
    """Retention deletes a request's folder: its input, output and every image, never a neighbour's."""
    names = ["r1/input.csv", "r1/output.csv", *(f"r1/images/{n}-0.jpg" for n in range(600))]
    for name in names:
        await blob_store.put(name, b"x", "image/jpeg")
    for name in ("r10/input.csv", "r/output.csv", "r0/images/0-0.jpg"):
        await blob_store.put(name, b"kept", "text/csv")
    assert await blob_store.delete_prefix("r1/") == len(names)
    assert all([await blob_store.open(name) is None for name in names])
    for name in ("r10/input.csv", "r/output.csv", "r0/images/0-0.jpg"):
        assert (await read(blob_store, name))[0] == b"kept"
    assert await blob_store.delete_prefix("r1/") == 0
