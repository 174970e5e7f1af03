"""Files (uploaded CSVs, output images, output CSVs), addressed by a path-like name, in one of three
stores chosen by ``IMGPIPE_BLOB_STORE``: an S3-compatible bucket (compose.yaml's default, which every
replica and every client reaches), GridFS (where MongoDB is a real server) or a local directory (the local
stack's default: the embedded database is pure Python, and image bytes through it cost it about 11 ms of
CPU per image)."""

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from imgpipe_runtime.blob_directory import DirectoryBlobStore
from imgpipe_runtime.blob_s3 import S3BlobStore, S3BlobWriter
from imgpipe_runtime.mongo import Database, Document
from imgpipe_runtime.settings import BlobSettings

CHUNK_BYTES = 255 * 1024  # GridFS's default chunk size


class BlobReader(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def content_type(self) -> str: ...

    @property
    def length(self) -> int: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


class BlobStore(Protocol):
    """What the services need of a file store; GridFsBlobStore, DirectoryBlobStore and S3BlobStore provide it."""

    async def put(self, name: str, data: bytes | IO[bytes], content_type: str) -> None: ...

    async def open(self, name: str) -> BlobReader | None: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Deletes every blob whose name starts with ``prefix`` (a request's ``<id>/``); returns how many."""
        ...

    def writer(self) -> DirectoryBlobStore | S3BlobWriter | None:
        """What a codec process stores its output with, where any process can write to the store."""
        ...

    def url(self, name: str) -> str | None:
        """Where a client fetches ``name`` straight from the store, or None where ingest serves it."""
        ...


class GridFsBlobStore:
    """Files in the GridFS layout (``<bucket>.files`` and ``<bucket>.chunks``, readable by any GridFS
    tool), written and read a chunk at a time: pymongo's own GridFS buffers up to 32 MB on upload and
    fetches up to 16 MB per batch on download, so a large file would sit in memory whole."""

    def __init__(self, db: Database, bucket: str = "blobs") -> None:
        self._files = db[f"{bucket}.files"]
        self._chunks = db[f"{bucket}.chunks"]
        self._indexed = False

    async def put(self, name: str, data: bytes | IO[bytes], content_type: str) -> None:
        """Stores ``data`` (bytes, or a file read from where it stands) under ``name``, replacing what was
        there: writing the same output twice is harmless."""
        if not self._indexed:
            await self._chunks.create_index([("files_id", 1), ("n", 1)], unique=True)
            self._indexed = True
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        start = source.tell()
        try:
            await self._write(name, source, content_type)
        except DuplicateKeyError:  # a blob of that name exists: replace it (the rare case, so not checked first)
            await self._files.delete_one({"_id": name})
            await self._chunks.delete_many({"files_id": name})
            source.seek(start)
            await self._write(name, source, content_type)

    async def _write(self, name: str, source: IO[bytes], content_type: str) -> None:
        length = number = 0
        while chunk := source.read(CHUNK_BYTES):
            await self._chunks.insert_one({"files_id": name, "n": number, "data": chunk})
            length += len(chunk)
            number += 1
        await self._files.insert_one(
            {
                "_id": name,
                "filename": name,
                "length": length,
                "chunkSize": CHUNK_BYTES,
                "uploadDate": datetime.now(UTC),
                "metadata": {"content_type": content_type},
            }
        )

    async def delete_prefix(self, prefix: str) -> int:
        """By a range of the files' ids (their names), which every database serves by the _id index."""
        deleted = 0
        while True:
            cursor = self._files.find({"_id": {"$gte": prefix, "$lt": prefix + "\uffff"}}, {"_id": 1}).limit(500)
            names = [file["_id"] async for file in cursor]
            if not names:
                return deleted
            await self._chunks.delete_many({"files_id": {"$in": names}})
            deleted += (await self._files.delete_many({"_id": {"$in": names}})).deleted_count

    def writer(self) -> None:
        """None: a database client does not travel to a codec process, so outputs come back as bytes."""
        return None

    def url(self, name: str) -> None:
        return None

    async def open(self, name: str) -> "GridFsBlob | None":
        file = await self._files.find_one({"_id": name})
        if file is None:
            return None
        content_type = (file.get("metadata") or {}).get("content_type", "application/octet-stream")
        return GridFsBlob(name, content_type, file["length"], self._chunks)


@dataclass(frozen=True)
class GridFsBlob:
    name: str
    content_type: str
    length: int
    chunk_collection: AsyncCollection[Document]

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, about a megabyte fetched at a time."""
        cursor = self.chunk_collection.find({"files_id": self.name}, sort=[("n", 1)], batch_size=4)
        expected = 0
        async for chunk in cursor:
            if chunk["n"] != expected:
                raise OSError(f"blob {self.name}: chunk {expected} is missing")
            expected += 1
            yield bytes(chunk["data"])


def open_blob_store(settings: BlobSettings, db: Database) -> BlobStore:
    if settings.store == "directory":
        return DirectoryBlobStore(settings.dir)
    if settings.store == "s3":
        return S3BlobStore(settings.s3)
    return GridFsBlobStore(db)


def blob_url(public_base_url: str, name: str) -> str:
    """The absolute URL at which ingest serves the blob ``name``."""
    return f"{public_base_url.rstrip('/')}/api/files/{name}"


def file_url(blobs: BlobStore, public_base_url: str, name: str) -> str:
    """The URL handed out for the output ``name``: the store's own where clients reach it (a bucket's,
    presigned or public), else ingest's."""
    return blobs.url(name) or blob_url(public_base_url, name)


def input_csv_name(request_id: str) -> str:
    return f"{request_id}/input.csv"


def output_csv_name(request_id: str, token: str | None = None) -> str:
    """The output CSV's name, holding the request's own ``output_token`` (see documents.new_request): its
    URL is a capability of its own, which no output image's URL gives away. A request stored before
    tokens has none: its output is ``output.csv``, read under the API-key rules like its input."""
    return f"{request_id}/output-{token}.csv" if token else f"{request_id}/output.csv"


def is_output_csv_name(name: str) -> bool:
    """A name output_csv_name gives a request with a token."""
    _, _, rest = name.partition("/")
    return rest.startswith("output-") and rest.endswith(".csv") and "/" not in rest and len(rest) > len("output-.csv")


def output_image_stem(request_id: str, row_index: int, image_index: int) -> str:
    """An output image's name without its extension, which the codec chooses."""
    return f"{request_id}/images/{row_index}-{image_index}"
