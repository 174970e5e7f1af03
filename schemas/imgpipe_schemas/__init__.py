from imgpipe_schemas.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Event,
    ImageResult,
    Progress,
    RequestAccepted,
    RequestCompleted,
    RowProcessed,
    RowSubmitted,
)
from imgpipe_schemas.topics import TOPICS, Topic

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TOPICS",
    "Event",
    "ImageResult",
    "Progress",
    "RequestAccepted",
    "RequestCompleted",
    "RowProcessed",
    "RowSubmitted",
    "Topic",
]
