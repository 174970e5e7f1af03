"""A blob store for handler tests whose codec stores its outputs itself, as a codec process does with the
directory or S3 store: nothing is written through it, and the URLs handed out are ingest's."""

from typing import IO

from imgpipe_runtime.blob_directory import DirectoryBlobStore


class CodecWrittenBlobs:
    async def put(self, name: str, data: bytes | IO[bytes], content_type: str) -> None:
        raise AssertionError(f"{name} should have been stored by the codec")

    async def open(self, name: str) -> None:
        return None

    async def delete_prefix(self, prefix: str) -> int:
        return 0

    def writer(self) -> DirectoryBlobStore | None:
        return None

    def url(self, name: str) -> None:
        return None
