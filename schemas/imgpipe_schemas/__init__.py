from imgpipe_schemas.events import (
    EVENT_TYPES,
    FINISHED,
    SCHEMA_VERSION,
    Event,
    ImageOptions,
    ImageResult,
    Progress,
    RequestAccepted,
    RequestCompleted,
    RequestStatus,
    RowProcessed,
    RowSubmitted,
)
from imgpipe_schemas.topics import TOPICS, Topic

__all__ = [
    "EVENT_TYPES",
    "FINISHED",
    "SCHEMA_VERSION",
    "TOPICS",
    "Event",
    "ImageOptions",
    "ImageResult",
    "Progress",
    "RequestAccepted",
    "RequestCompleted",
    "RequestStatus",
    "RowProcessed",
    "RowSubmitted",
    "Topic",
]
