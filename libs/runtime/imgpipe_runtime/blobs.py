"""Files (uploaded CSVs, output images, output CSVs) in GridFS, addressed by a path-like name."""

from dataclasses import dataclass

from gridfs import AsyncGridFSBucket, NoFile
from pymongo.asynchronous.database import AsyncDatabase


@dataclass(frozen=True)
class Blob:
    name: str
    content_type: str
    data: bytes


class BlobStore:
    def __init__(self, db: AsyncDatabase, bucket: str = "blobs") -> None:
        self._bucket = AsyncGridFSBucket(db, bucket_name=bucket)

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        """Stores ``data`` under ``name``, replacing what was there: writing the same output twice is harmless."""
        try:
            await self._bucket.delete(name)
        except NoFile:
            pass
        await self._bucket.upload_from_stream_with_id(
            name, name, data, metadata={"content_type": content_type}
        )

    async def get(self, name: str) -> Blob | None:
        try:
            stream = await self._bucket.open_download_stream(name)
        except NoFile:
            return None
        data = await stream.read()
        content_type = (stream.metadata or {}).get("content_type", "application/octet-stream")
        return Blob(name, content_type, data)


def blob_url(public_base_url: str, name: str) -> str:
    """The absolute URL at which ingest serves the blob ``name``."""
    return f"{public_base_url.rstrip('/')}/api/files/{name}"


def input_csv_name(request_id: str) -> str:
    return f"{request_id}/input.csv"


def output_csv_name(request_id: str) -> str:
    return f"{request_id}/output.csv"


def output_image_name(request_id: str, row_index: int, image_index: int, extension: str) -> str:
    return f"{request_id}/images/{row_index}-{image_index}.{extension}"
