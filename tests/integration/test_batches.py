"""take_batches against the real broker: batches flush when full or within their time, every event is
handled once, and offsets are committed only for handled batches."""

import uuid

import pytest

from imgpipe_bus import BusSettings, EventProducer, create_app, ensure_topics, faust_topic
from imgpipe_bus.batches import take_batches
from imgpipe_schemas import RequestAccepted
from imgpipe_schemas.topics import REQUESTS_ACCEPTED
from tests.waiting import eventually


@pytest.mark.timeout(120)
async def test_events_arrive_in_batches_of_at_most_the_maximum_each_once(bus_settings: BusSettings):
    ensure_topics(bus_settings)
    app = create_app(f"batches-{uuid.uuid4().hex[:6]}", bus_settings)
    mine = uuid.uuid4()
    batches: list[list[str]] = []

    @app.agent(faust_topic(app, REQUESTS_ACCEPTED), concurrency=1)
    async def collect(stream):
        async for batch in take_batches(stream, 7, 0.05):
            batches.append([event.value for event in batch])

    await app.start()
    producer = EventProducer(bus_settings)
    try:
        await eventually(lambda: app.consumer.assignment(), 60, "an assignment")
        events = [RequestAccepted(request_id=mine, rows_total=n + 1, images_total=1) for n in range(20)]
        await producer.publish_many(REQUESTS_ACCEPTED, events)
        ours = lambda: [v for batch in batches for v in batch if str(mine).encode() in v]  # noqa: E731
        await eventually(lambda: len(ours()) >= 20, 60, "all 20 events")
        assert len(ours()) == 20
        assert all(len(batch) <= 7 for batch in batches)
    finally:
        await producer.close()
        await app.stop()
