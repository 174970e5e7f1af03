"""GET /api/files/{name}: output CSVs, input CSVs and images, streamed from the blob store."""

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from imgpipe_ingest.deps import Blobs
from imgpipe_ingest.envelope import ClientError

router = APIRouter()


@router.get("/api/files/{name:path}", summary="An output CSV or image", response_class=Response)
async def files(name: str, blobs: Blobs) -> Response:
    blob = await blobs.open(name)
    if blob is None:
        raise ClientError(404, f"no file named {name}")
    headers = {"Content-Length": str(blob.length)}
    if "/images/" in name:
        headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return StreamingResponse(blob.chunks(), media_type=blob.content_type, headers=headers)
