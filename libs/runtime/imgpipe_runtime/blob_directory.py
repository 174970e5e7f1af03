"""Files (uploaded CSVs, output images, output CSVs) in a local directory, addressed by a path-like name.

The default of the local stack: an image written here costs no database CPU, the codec process writes
it itself (nothing travels back to the worker), and ingest serves it as a file. Every write goes to a
temporary file that is renamed over the name, so a reader never sees half a file and a crash leaves
at worst a stray ``.*.tmp`` beside it. The content type follows from the name's extension.
"""

import asyncio
import mimetypes
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

READ_BYTES = 1024 * 1024
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".tiff": "image/tiff",
    ".bmp": "image/bmp",
}


def content_type_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class DirectoryBlobStore:
    """Blobs as files under ``root``; picklable, so that a pool process can write with it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path(self, name: str) -> Path:
        """The file of blob ``name``; ValueError for a name that could leave the directory."""
        parts = name.split("/")
        if not name or "\\" in name or "\0" in name or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"{name[:100]!r} is not a blob name")
        return self.root.joinpath(*parts)

    def write(self, name: str, data: bytes | IO[bytes], content_type: str = "") -> None:
        """Stores ``data`` (bytes, or a file read from where it stands) under ``name``, replacing what was
        there. ``content_type`` is implied by the name's extension."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out, READ_BYTES)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def put(self, name: str, data: bytes | IO[bytes], content_type: str) -> None:
        await asyncio.to_thread(self.write, name, data, content_type)

    async def delete_prefix(self, prefix: str) -> int:
        """``prefix`` names a folder (``<request id>/``): the folder goes, with every file in it."""
        folder = self.path(prefix.rstrip("/"))

        def remove() -> int:
            if not folder.is_dir():
                return 0
            count = sum(1 for path in folder.rglob("*") if path.is_file())
            shutil.rmtree(folder, ignore_errors=True)
            return count

        return await asyncio.to_thread(remove)

    def writer(self) -> "DirectoryBlobStore":
        """What a codec process writes its output with."""
        return self

    def url(self, name: str) -> None:
        """None: ingest serves the directory's files."""
        return None

    async def open(self, name: str) -> "FileBlob | None":
        try:
            path = self.path(name)
            stat = await asyncio.to_thread(path.stat)
        except (ValueError, OSError):
            return None
        if not path.is_file():
            return None
        return FileBlob(name, content_type_of(name), stat.st_size, path)


@dataclass(frozen=True)
class FileBlob:
    name: str
    content_type: str
    length: int
    path: Path

    async def chunks(self) -> AsyncIterator[bytes]:
        with open(self.path, "rb") as source:
            while chunk := await asyncio.to_thread(source.read, READ_BYTES):
                yield chunk
