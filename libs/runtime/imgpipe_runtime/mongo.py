from collections.abc import Mapping
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_runtime.outages import is_outage
from imgpipe_runtime.settings import MongoSettings

# A stored document as the services read and write it, and a database of them.
Document = dict[str, Any]
Database = AsyncDatabase[Document]


def connect(settings: MongoSettings) -> Database:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.url,
        serverSelectionTimeoutMS=settings.timeout_ms,
        # Pooled connections are dropped before a server's idle timeout can close them under us
        # (secantusd closes idle clients after 300 s).
        maxIdleTimeMS=settings.max_idle_ms,
        tz_aware=True,
    )
    return client[settings.database]


async def database_reachable(db: Database) -> bool:
    try:
        await db.command("ping")
        return True
    except Exception:  # noqa: BLE001 - any failure to answer means not reachable
        return False


# What the services give their agent stages (imgpipe_bus.agent_stage) to wait out rather than dead-letter:
# the database or the file store unreachable, or unable to write (imgpipe_runtime.outages).
OUTAGES = is_outage


DUPLICATE_KEY = 11000


def only_duplicate_keys(details: Mapping[str, Any]) -> bool:
    """Whether every write error of a bulk write (BulkWriteError.details) is a duplicate key: an insert of
    a document already stored, or a conditional upsert whose condition failed on an existing one."""
    return all(error["code"] == DUPLICATE_KEY for error in details["writeErrors"])
