"""Refuses an oversized request body while it arrives, so that it is never received (or spooled) whole."""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgpipe_ingest.envelope import envelope

UNREAD = ("GET", "HEAD")


class BodyLimit:
    """A body longer than ``limit`` bytes gets 413: at once by its Content-Length, else as soon as the
    bytes received pass the limit (a missing or lying Content-Length does not help the sender). A GET or
    HEAD is let through: no such route reads a body, and one sent along is never read (nor documented as 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in UNREAD:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await envelope(413, self._message())(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the route's body parsing: the app's handler answers it in the envelope.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.limit} bytes"
