"""An upload's rows accepted in the background: a resumed acceptance stores and publishes only the rows
after those already accepted, and storing a row again changes nothing."""

import io
import uuid

from imgpipe_bus import EventProducer, ensure_topics
from imgpipe_ingest.acceptance import accept_rows
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.csv_input import Limits, validate_csv
from imgpipe_runtime.blob_directory import DirectoryBlobStore
from imgpipe_runtime.blobs import input_csv_name
from imgpipe_runtime.documents import ROWS, ensure_indexes
from imgpipe_schemas.topics import ROWS_SUBMITTED
from tests.support.kafka_helpers import consume

ROWS_TOTAL = 2500
CSV = (
    "S. No.,Product Name,Input Image Urls\n"
    + "".join(f"{n},P{n},http://in/{n}.jpg\n" for n in range(1, ROWS_TOTAL + 1))
).encode()


async def test_a_resumed_acceptance_goes_on_from_the_rows_accepted(db, bus_settings, tmp_path):
    ensure_topics(bus_settings)
    await ensure_indexes(db)
    store, blobs, producer = RequestStore(db), DirectoryBlobStore(tmp_path), EventProducer(bus_settings)
    request_id = str(uuid.uuid4())
    await blobs.put(input_csv_name(request_id), CSV, "text/csv")
    summary = validate_csv(io.BytesIO(CSV), Limits())
    request = await store.insert_request(
        request_id, summary, input_file=input_csv_name(request_id), webhook_url=None, quality=50, output_format="jpeg"
    )
    # An earlier acceptance stored and published rows 0 … 1499, and stored part of the next chunk, then stopped.
    from imgpipe_ingest.csv_input import read_rows

    first = [row for batch in read_rows(io.BytesIO(CSV), Limits()) for row in batch]
    await store.insert_rows(request_id, first[:1700])
    await db[ROWS].update_one({"_id": f"{request_id}:1600"}, {"$set": {"marked": True}})
    request["rows_accepted"] = 1500
    try:
        assert await accept_rows(request, store=store, blobs=blobs, producer=producer, lease_s=60)
    finally:
        await producer.close()
    stored = await store.get(request_id)
    assert (stored["status"], stored["rows_accepted"]) == ("PROCESSING", ROWS_TOTAL)
    assert await db[ROWS].count_documents({"request_id": request_id}) == ROWS_TOTAL
    assert (await db[ROWS].find_one({"_id": f"{request_id}:1600"}))["marked"]  # stored once, left as it was
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    events = consume(bus_settings.bootstrap_servers, ROWS_SUBMITTED, ROWS_TOTAL - 1500, match=mine)
    assert sorted(event.row_index for _, _, event in events) == list(range(1500, ROWS_TOTAL))
