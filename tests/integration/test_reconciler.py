import uuid
from datetime import UTC, datetime, timedelta

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.handlers import Adapters
from imgpipe_assembler.reconciler import ReconcilePolicy, reconcile
from imgpipe_bus import EventProducer, ensure_topics
from imgpipe_runtime.blobs import GridFsBlobStore
from imgpipe_runtime.mongo import connect
from imgpipe_schemas.topics import REQUESTS_COMPLETED, ROWS_SUBMITTED
from tests.integration.kafka_helpers import consume
from tests.integration.uploads import store_upload

CSV = b"S. No.,Product Name,Input Image Urls\n1,A,http://in/0\n2,B,\"http://in/1,http://in/2\"\n"


async def test_a_request_stuck_in_pending_is_redriven_then_given_up(mongo_settings, bus_settings):
    ensure_topics(bus_settings)
    db = connect(mongo_settings)
    producer = EventProducer(bus_settings)
    request_id = str(uuid.uuid4())
    await store_upload(db, request_id, CSV, quality=40)
    store = ProgressStore(db)
    policy = ReconcilePolicy(stall_s=60, max_rounds=2)
    adapters = Adapters(store=store, blobs=GridFsBlobStore(db), producer=producer, public_base_url="http://api")
    run = lambda now: reconcile(adapters, policy=policy, now=now)  # noqa: E731
    mine = lambda event: str(event.request_id) == request_id  # noqa: E731
    start = datetime.now(UTC)
    try:
        assert (await run(start))["redriven"] == 0  # not stalled yet
        assert (await run(start + timedelta(seconds=61)))["redriven"] == 1
        request = await store.get(request_id)
        assert (request["status"], request["reconcile_rounds"]) == ("PROCESSING", 1)
        rows = consume(bus_settings.bootstrap_servers, ROWS_SUBMITTED, 2, match=mine)
        assert sorted((e.row_index, e.quality, tuple(e.image_urls)) for _, _, e in rows) == [
            (0, 40, ("http://in/0",)), (1, 40, ("http://in/1", "http://in/2")),
        ]
        assert (await run(start + timedelta(seconds=90)))["redriven"] == 0  # waits a full stall again
        assert (await run(start + timedelta(seconds=122)))["redriven"] == 1
        assert (await run(start + timedelta(seconds=183)))["gave_up"] == 1
    finally:
        await producer.close()
    request = await store.get(request_id)
    assert request["status"] == "FAILED"
    assert request["progress"] == {"rows_total": 2, "rows_done": 2, "images_total": 3, "images_ok": 0, "images_failed": 3}
    completed = consume(bus_settings.bootstrap_servers, REQUESTS_COMPLETED, 1, match=mine)[0][2]
    assert completed.status == "FAILED"
    await db.client.close()
