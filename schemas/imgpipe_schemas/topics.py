"""The topics and the one event type each carries."""

from dataclasses import dataclass

from imgpipe_schemas.events import Event, RequestAccepted, RequestCompleted, RowProcessed, RowSubmitted


@dataclass(frozen=True)
class Topic:
    name: str
    event: type[Event]
    key: str


REQUESTS_ACCEPTED = Topic("imgpipe.requests.accepted", RequestAccepted, "request_id")
ROWS_SUBMITTED = Topic("imgpipe.rows.submitted", RowSubmitted, "request_id:row_index")
ROWS_PROCESSED = Topic("imgpipe.rows.processed", RowProcessed, "request_id")
REQUESTS_COMPLETED = Topic("imgpipe.requests.completed", RequestCompleted, "request_id")

TOPICS: tuple[Topic, ...] = (REQUESTS_ACCEPTED, ROWS_SUBMITTED, ROWS_PROCESSED, REQUESTS_COMPLETED)

# The image workers' consumer group on ROWS_SUBMITTED: the reconciler reads its committed offsets to tell a
# row that waits for a worker from one that was lost.
IMAGE_WORKER_GROUP = "image-worker"
# The assembler's consumer group: the reconciler re-drives a row read by a worker only once this group has
# read every result on ROWS_PROCESSED, so that a result merely queued is never taken for lost.
ASSEMBLER_GROUP = "assembler"
