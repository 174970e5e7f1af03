import csv
import io
import uuid

import pytest

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.handlers import record_results
from imgpipe_bus import EventProducer, ensure_topics
from imgpipe_runtime.blobs import BlobStore
from imgpipe_runtime.mongo import connect
from imgpipe_schemas import ImageResult, RowProcessed
from imgpipe_schemas.topics import REQUESTS_COMPLETED
from tests.integration.kafka_helpers import consume
from tests.integration.uploads import store_upload


@pytest.fixture
async def db(mongo_settings):
    database = connect(mongo_settings)
    yield database
    await database.client.drop_database(mongo_settings.database)
    await database.client.close()


async def test_blobs_are_stored_replaced_and_missing_ones_are_none(db):
    blobs = BlobStore(db)
    await blobs.put("r/images/0-0.jpg", b"first", "image/jpeg")
    await blobs.put("r/images/0-0.jpg", b"second", "image/jpeg")
    blob = await blobs.get("r/images/0-0.jpg")
    assert (blob.data, blob.content_type) == (b"second", "image/jpeg")
    assert await blobs.get("r/nothing") is None


async def test_a_blob_of_several_chunks_is_replaced_whole_and_read_from_a_file_where_it_stands(db):
    blobs = BlobStore(db)
    large = bytes(range(256)) * 3000  # three GridFS chunks
    await blobs.put("r/input.csv", large, "text/csv")
    assert (await blobs.get("r/input.csv")).data == large
    source = io.BytesIO(b"header to skip|short")
    source.seek(len(b"header to skip|"))
    await blobs.put("r/input.csv", source, "text/csv")
    assert (await blobs.get("r/input.csv")).data == b"short"
    await blobs.put("r/input.csv", b"", "text/csv")
    reader = await blobs.open("r/input.csv")
    assert (reader.length, [chunk async for chunk in reader.chunks()]) == (0, [])


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
    store, blobs, producer = ProgressStore(db), BlobStore(db), EventProducer(bus_settings)
    deliver = lambda batch: record_results(  # noqa: E731
        batch, store=store, blobs=blobs, producer=producer, public_base_url="http://api"
    )
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    try:
        await deliver([result(request_id, 0, True), result(request_id, 0, True)])
        progress = await requests.progress(await requests.get(request_id))
        assert (progress.rows_done, progress.images_ok, progress.images_failed) == (1, 1, 0)
        await deliver([result(request_id, 2, False), result(request_id, 0, False)])
        await deliver([result(request_id, 1, True)])
        await deliver([result(request_id, 1, True), result(request_id, 2, False)])

        request = await requests.get(request_id)
        assert request["status"] == "SUCCESS"
        assert request["progress"] == {"rows_total": 3, "rows_done": 3, "images_total": 3, "images_ok": 2, "images_failed": 1}
        table = list(csv.reader(io.StringIO((await blobs.get(request["output_file"])).data.decode())))
        assert [row[0] for row in table[1:]] == ["1", "2", "3"]
        assert [row[3] for row in table[1:]] == ["http://out/0", "http://out/1", ""]
        completed = consume(bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 1, match=mine)[0][2]
        assert completed.event_type == "request.completed"
        assert completed.output_file_url == f"http://api/api/files/{request_id}/output.csv"
        assert str(completed.event_id) == request["completion_event_id"]

        # A replayed row that now succeeds replaces its error and the request is announced again.
        await deliver([result(request_id, 2, True)])
    finally:
        await producer.close()
    request = await requests.get(request_id)
    assert request["progress"]["images_ok"] == 3 and request["progress"]["images_failed"] == 0
    table = list(csv.reader(io.StringIO((await blobs.get(request["output_file"])).data.decode())))
    assert [row[3] for row in table[1:]] == ["http://out/0", "http://out/1", "http://out/2"]
    events = consume(bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 2, match=mine)
    assert [event.event_type for _, _, event in events] == ["request.completed", "request.updated"]
    assert events[0][2].event_id != events[1][2].event_id
