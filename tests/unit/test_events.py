import json
import uuid
from pathlib import Path

import jsonschema_rs
import pytest

from imgpipe_bus import PoisonMessage, decode, encode
from imgpipe_schemas import TOPICS, ImageResult, RowProcessed, RowSubmitted
from imgpipe_schemas.export import documents
from imgpipe_schemas.topics import ROWS_PROCESSED, ROWS_SUBMITTED

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json" / "v1"


def test_committed_json_schemas_match_the_python_models():
    expected = documents()
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    assert committed.keys() == expected.keys(), "run `make schemas` and commit schemas/json"
    for name, text in expected.items():
        assert committed[name] == text, f"{name} drifted from the models: run `make schemas` and commit it"


def test_every_topic_has_a_schema_naming_it():
    for topic in TOPICS:
        document = json.loads(documents()[f"{topic.event.model_fields['event_type'].default}.json"])
        assert document["x-topic"] == topic.name
        assert {"event_id", "request_id", "schema_version", "occurred_at", "event_type"} <= set(document["required"])


def test_events_round_trip_as_json_with_id_version_and_time():
    row = RowSubmitted(request_id=uuid.uuid4(), row_index=3, serial=4, product_name="P", image_urls=["http://a/b.jpg"])
    wire = json.loads(encode(row))
    assert wire["schema_version"] == 1 and wire["event_type"] == "row.submitted"
    assert uuid.UUID(wire["event_id"]) and wire["occurred_at"]
    assert decode(ROWS_SUBMITTED, encode(row)) == row


def test_rows_of_a_request_spread_and_results_share_a_key():
    request_id = uuid.uuid4()
    rows = [
        RowSubmitted(request_id=request_id, row_index=i, serial=i + 1, product_name="P", image_urls=["http://a/b"])
        for i in range(3)
    ]
    assert len({row.partition_key() for row in rows}) == 3
    results = [
        RowProcessed(request_id=request_id, row_index=i, images=[ImageResult(source_url="http://a/b", error_code="x")])
        for i in range(3)
    ]
    assert {result.partition_key() for result in results} == {str(request_id)}


@pytest.mark.parametrize(
    "value",
    [None, b"not json", b'{"event_type": "row.processed"}', json.dumps({"request_id": "nope"}).encode()],
)
def test_undecodable_messages_are_poison(value):
    with pytest.raises(PoisonMessage):
        decode(ROWS_PROCESSED, value)


def test_a_row_event_of_the_wrong_type_is_poison():
    row = RowSubmitted(request_id=uuid.uuid4(), row_index=0, serial=1, product_name="P", image_urls=["http://a/b"])
    with pytest.raises(PoisonMessage):
        decode(ROWS_PROCESSED, encode(row))


def direct_row(**changes) -> dict:
    """A row.submitted event as a producer in another language writes it, from the JSON Schema document."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "row.submitted",
        "schema_version": 1,
        "request_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-24T10:00:00Z",
        "row_index": 0,
        "serial": 1,
        "product_name": "Shoe",
        "image_urls": ["https://images.example/shoe.jpg"],
        "quality": 50,
        "output_format": "jpeg",
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not ...}


@pytest.mark.parametrize(
    ("changes", "valid"),
    [
        ({}, True),
        ({"quality": 95, "output_format": "keep"}, True),
        ({"event_id": ...}, False),
        ({"occurred_at": ...}, False),
        ({"quality": ...}, False),
        ({"quality": 0}, False),
        ({"quality": 96}, False),
        ({"output_format": "gif"}, False),
        ({"image_options": {}}, True),
        ({"image_options": {"max_width": 100}}, True),
        ({"image_options": {"max_width": 100, "max_height": 80, "fit": "cover", "background": "00ff00"}}, True),
        ({"image_options": {"max_width": 100, "fit": "pad"}}, False),
        ({"image_options": {"max_width": 100, "max_height": None, "fit": "cover"}}, False),
        ({"image_options": {"max_width": 0}}, False),
        ({"image_options": {"background": "red"}}, False),
        ({"image_options": {"angle": 90}}, False),
        ({"image_urls": []}, False),
        ({"row_index": -1}, False),
        ({"schema_version": 2}, False),
        ({"event_type": "row.processed"}, False),
        ({"colour": "red"}, False),
        ({"request_id": "not-a-uuid"}, False),
        ({"occurred_at": "yesterday"}, False),
    ],
)
def test_the_json_schema_document_and_the_consumers_agree_on_what_is_valid(changes, valid):
    event = direct_row(**changes)
    schema = json.loads((SCHEMA_DIR / "row.submitted.json").read_text())
    assert jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(event) is valid
    if valid:
        assert decode(ROWS_SUBMITTED, json.dumps(event).encode()).request_id == uuid.UUID(event["request_id"])
    else:
        with pytest.raises(PoisonMessage):
            decode(ROWS_SUBMITTED, json.dumps(event).encode())


def test_an_image_error_message_is_bounded_wherever_it_is_read():
    from imgpipe_schemas import ImageResult

    long = ImageResult(source_url="http://a/x.jpg", error_code="http_404", error_message="L" * 8000)
    assert len(long.error_message) == 500 and long.error_message.endswith("…")
    again = ImageResult.model_validate_json(long.model_dump_json().replace("…", "L" * 10))
    assert len(again.error_message) == 500


def test_a_row_event_beyond_the_csvs_bounds_is_invalid_on_the_wire():
    """A direct producer's row with 40,000 URLs is dead-lettered as invalid, never worked on."""
    row = RowSubmitted(request_id=uuid.uuid4(), row_index=0, serial=1, product_name="P", image_urls=["ftp://x/1"])
    wide = json.loads(encode(row))
    wide["image_urls"] = [f"ftp://x/{n}" for n in range(40_000)]
    with pytest.raises(PoisonMessage, match="image_urls"):
        decode(ROWS_SUBMITTED, json.dumps(wide).encode())
    long_name = {**json.loads(encode(row)), "product_name": "n" * 1001}
    with pytest.raises(PoisonMessage, match="product_name"):
        decode(ROWS_SUBMITTED, json.dumps(long_name).encode())
    long_url = {**json.loads(encode(row)), "image_urls": ["http://x/" + "u" * 2048]}
    with pytest.raises(PoisonMessage, match="image_urls"):
        decode(ROWS_SUBMITTED, json.dumps(long_url).encode())


def test_the_largest_valid_row_result_is_far_below_a_kafka_message():
    from imgpipe_schemas.events import MAX_ERROR_MESSAGE, MAX_IMAGES_PER_ROW, MAX_URL_CHARS

    image = ImageResult(
        source_url="http://x/" + "\u20ac" * (MAX_URL_CHARS - 9),
        output_url="http://o/" + "\u20ac" * (MAX_URL_CHARS - 9),
        error_code="e" * 100,
        error_message="\u20ac" * MAX_ERROR_MESSAGE,
    )
    result = RowProcessed(request_id=uuid.uuid4(), row_index=2**62, images=[image] * MAX_IMAGES_PER_ROW)
    assert len(encode(result)) < 1_000_000 // 2


def test_only_broker_trouble_is_an_outage():
    from confluent_kafka import KafkaError, KafkaException

    from imgpipe_bus.producer import MessageRejected, send_failure

    for code in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError._ALL_BROKERS_DOWN,
    ):
        assert isinstance(send_failure(KafkaError(code), "t", 1), KafkaException)
    for code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG, KafkaError.RECORD_LIST_TOO_LARGE):
        assert isinstance(send_failure(KafkaError(code), "t", 1), MessageRejected)
