"""Events are UTF-8 JSON on the wire, one pydantic model per topic."""

from pydantic import ValidationError

from imgpipe_schemas import Event, Topic
from imgpipe_schemas.events import WIRE


class PoisonMessage(ValueError):
    """A message that can never be processed: not JSON, or not the topic's event."""


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def decode(topic: Topic, value: bytes | None) -> Event:
    if value is None:
        raise PoisonMessage(f"empty message on {topic.name}")
    try:
        return topic.event.model_validate_json(value, context=WIRE)
    except ValidationError as exc:
        raise PoisonMessage(f"not a valid {topic.event.__name__} on {topic.name}: {exc}") from exc
