"""The seed's response envelope: {"status", "message", "payload"}."""

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel


class Envelope(BaseModel):
    status: str
    message: str
    payload: dict[str, Any] | list[Any] | None = None


def envelope(code: int, message: str, payload: Any = None) -> JSONResponse:
    status = "success" if code < 400 else "error"
    return JSONResponse({"status": status, "message": message, "payload": payload}, status_code=code)


class ClientError(Exception):
    def __init__(self, code: int, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.payload = code, message, payload
