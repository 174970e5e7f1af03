"""The live counts the assembler keeps on an upload's request agree with counting its rows, through
duplicates, replays that improve a row, and a batch that holds the same row twice."""

import uuid

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_runtime.documents import ROWS, live_counts, progress, rows_of
from imgpipe_schemas import ImageResult, RowProcessed
from tests.support.uploads import store_upload

CSV = b'S. No.,Product Name,Input Image Urls\n1,A,"http://in/0,http://in/1"\n2,B,http://in/2\n3,C,http://in/3\n'


def result(request_id: str, row: int, failed: int, images: int = 1) -> RowProcessed:
    outcomes = [
        ImageResult(source_url=f"http://in/{row}/{i}", error_code="http_404", error_message="gone")
        if i < failed
        else ImageResult(source_url=f"http://in/{row}/{i}", output_url=f"http://out/{row}/{i}")
        for i in range(images)
    ]
    return RowProcessed(request_id=uuid.UUID(request_id), row_index=row, images=outcomes)


async def counted(db, request: dict):
    return progress(request, await db[ROWS].find(rows_of(request)).to_list())


async def test_live_counts_match_the_rows_through_duplicates_and_replays(db):
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    store = ProgressStore(db)
    batches = [
        [result(request_id, 0, failed=2, images=2), result(request_id, 0, failed=2, images=2)],
        [result(request_id, 1, failed=0), result(request_id, 0, failed=1, images=2)],  # row 0 improves
        [result(request_id, 1, failed=1)],  # worse than stored: ignored
        [result(request_id, 2, failed=1), result(request_id, 2, failed=0)],  # the better of the two counts
        [result(request_id, 0, failed=0, images=2)],  # replay of a finished row
    ]
    for batch in batches:
        await store.record_rows(batch)
        request = await store.get(request_id)
        assert live_counts(request) == await counted(db, request)
        assert await store.rows_done(request) == (await counted(db, request)).rows_done
    final = live_counts(await store.get(request_id))
    assert (final.rows_done, final.images_ok, final.images_failed) == (3, 4, 0)


async def test_counts_short_of_the_rows_are_recounted_and_a_finished_request_counts_its_rows(db):
    """A crash between storing a batch's rows and counting them leaves the live counts short."""
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    store = ProgressStore(db)
    await store.record_rows(
        [result(request_id, 0, failed=0, images=2), result(request_id, 1, failed=0), result(request_id, 2, failed=0)]
    )
    await db["requests"].update_one({"_id": request_id}, {"$inc": {"live.rows_done": -1, "live.images_ok": -1}})
    short = await store.get(request_id)
    assert await store.rows_done(short) == 2
    await db["requests"].update_one({"_id": request_id}, {"$set": {"status": "SUCCESS"}})
    assert await store.rows_done(await store.get(request_id)) == 3  # finished: the rows themselves
    await store.recount(short)
    recounted = await store.get(request_id)
    assert live_counts(recounted) == await counted(db, recounted)


class RecordingProducer:
    def __init__(self) -> None:
        self.events = []

    async def publish(self, topic, event) -> None:
        self.events.append(event)


async def test_a_row_improved_just_before_a_crash_rebuilds_the_stored_output_on_redelivery(db):
    from imgpipe_assembler.handlers import Adapters, record_results
    from imgpipe_runtime.blobs import GridFsBlobStore

    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV)
    store, producer, blobs = ProgressStore(db), RecordingProducer(), GridFsBlobStore(db)
    adapters = Adapters(store=store, blobs=blobs, producer=producer, public_base_url="http://api")
    await record_results(
        [result(request_id, 0, 0, images=2), result(request_id, 1, 1), result(request_id, 2, 0)], adapters
    )
    better = result(request_id, 1, failed=0)
    await store.record_rows([better])  # stored; the process stopped before rebuilding the output
    await record_results([better], adapters)
    assert [event.event_type for event in producer.events] == ["request.completed", "request.updated"]
    reader = await blobs.open((await store.get(request_id))["output_file"])
    output = b"".join([chunk async for chunk in reader.chunks()]).decode()
    assert "http://out/1/0" in output and "http_404" not in output
    await record_results([better, result(request_id, 0, 0, images=2)], adapters)
    assert len(producer.events) == 2
