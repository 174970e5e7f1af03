import uuid

from confluent_kafka.admin import AdminClient

from imgpipe_bus import BusSettings, EventProducer, create_app, ensure_topics, topic_names
from imgpipe_schemas import ImageResult, RowProcessed, RowSubmitted
from imgpipe_schemas.topics import ROWS_PROCESSED, ROWS_SUBMITTED
from tests.integration.kafka_helpers import consume


def test_topics_are_created_explicitly_with_the_configured_partitions(bus_settings):
    ensure_topics(bus_settings)
    assert ensure_topics(bus_settings) == []
    metadata = AdminClient({"bootstrap.servers": bus_settings.bootstrap_servers}).list_topics(timeout=10)
    for name in topic_names():
        assert len(metadata.topics[name].partitions) == bus_settings.partitions


async def test_rows_spread_over_partitions_and_results_of_a_request_land_together(bus_settings):
    ensure_topics(bus_settings)
    producer = EventProducer(bus_settings)
    request_id = uuid.uuid4()
    try:
        await producer.publish_many(
            ROWS_SUBMITTED,
            [
                RowSubmitted(request_id=request_id, row_index=i, serial=i + 1, product_name="P", image_urls=["http://x/y"])
                for i in range(16)
            ],
        )
        await producer.publish_many(
            ROWS_PROCESSED,
            [
                RowProcessed(request_id=request_id, row_index=i, images=[ImageResult(source_url="http://x/y", error_code="e")])
                for i in range(16)
            ],
        )
    finally:
        await producer.close()
    mine = lambda event: event.request_id == request_id  # noqa: E731
    rows = consume(bus_settings.bootstrap_servers, ROWS_SUBMITTED, 16, match=mine)
    assert {key for key, _, _ in rows} == {f"{request_id}:{i}" for i in range(16)}
    assert len({partition for _, partition, _ in rows}) > 1
    results = consume(bus_settings.bootstrap_servers, ROWS_PROCESSED, 16, match=mine)
    assert {key for key, _, _ in results} == {str(request_id)}
    assert len({partition for _, partition, _ in results}) == 1


async def test_faust_consumers_wait_at_most_the_configured_fetch_time():
    app = create_app("probe", BusSettings(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=7))
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 7
    finally:
        await consumer.stop()
