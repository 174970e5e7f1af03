"""What the assembler's three stores share: the request and row collections (their documents defined in
imgpipe_runtime.documents), and the update helpers more than one of them needs."""

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from imgpipe_runtime.documents import (
    REQUESTS,
    ROWS,
)
from imgpipe_runtime.mongo import only_duplicate_keys

# The embedded database answers an $in on _id in time that grows faster than the list: measured over a
# 100,000-row request, 500 ids a read took 37 s in all, 200 took 17 s, 20 to 50 took 8 s.
ROWS_PER_READ = 40


class Collections:
    """The request and row collections of one database."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db
        self._requests = db[REQUESTS]
        self._rows = db[ROWS]


UNANSWERED_FIELDS = {"unanswered_since": "", "unanswered_rows": ""}
DELIVERY_PENDING = ("delivery_pending", "delivery_pending_since", "reannounced")


def delivery_pending(now: datetime) -> dict:
    """A new completion's delivery is looked for from ``now`` (the reconciler's undelivered_completions)."""
    return {"delivery_pending": True, "delivery_pending_since": now, "reannounced": 0}


def as_naive_utc(moment: datetime) -> datetime:
    """A stored time as UTC without its zone: MongoDB gives them back naive, and comparisons need one kind."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def unanswered_note(since: datetime | None, rows: Sequence[int]) -> dict:
    """The update that notes ``rows`` as unanswered since ``since``, or, without both, clears the note."""
    if since and rows:
        return {"$set": {"unanswered_since": since, "unanswered_rows": list(rows)}}
    return {"$unset": dict(UNANSWERED_FIELDS)}


async def upsert_new(collection, updates: list[UpdateOne]) -> int:
    """Runs conditional upserts; one whose condition fails on an existing document is a no-op (it surfaces
    as a duplicate key). Returns how many documents were inserted or changed."""
    try:
        outcome = (await collection.bulk_write(updates, ordered=False)).bulk_api_result
    except BulkWriteError as exc:
        outcome = exc.details
        if not only_duplicate_keys(outcome):
            raise
    return outcome["nModified"] + outcome["nUpserted"]
