"""GET /api/files/{name}: output CSVs, input CSVs and images, from the blob store: a file of the
directory store is sent as a file (no copy through the application), a GridFS one is streamed."""

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response, StreamingResponse

from imgpipe_ingest.deps import Blobs
from imgpipe_ingest.envelope import ClientError
from imgpipe_runtime.blob_directory import FileBlob

router = APIRouter()


@router.get("/api/files/{name:path}", summary="An output CSV or image", response_class=Response)
async def files(name: str, blobs: Blobs) -> Response:
    blob = await blobs.open(name)
    if blob is None:
        raise ClientError(404, f"no file named {name}")
    headers = {"Content-Length": str(blob.length)}
    if "/images/" in name:
        headers["Cache-Control"] = "public, max-age=31536000, immutable"
    if isinstance(blob, FileBlob):  # FileResponse measures the file it sends (it may have been replaced)
        headers.pop("Content-Length")
        return FileResponse(blob.path, media_type=blob.content_type, headers=headers)
    return StreamingResponse(blob.chunks(), media_type=blob.content_type, headers=headers)
