"""The seed's response envelope, {"status", "message", "payload"}, and how every error is answered in it."""

import logging
from typing import Any

from confluent_kafka import KafkaException
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)


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


async def _client_error(_: Request, exc: ClientError) -> JSONResponse:
    return envelope(exc.code, exc.message, exc.payload)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("answering 503: %r", exc)
    response = envelope(503, "the service is briefly unavailable (database or broker); retry shortly")
    response.headers["Retry-After"] = "5"
    return response


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        {"field": ".".join(str(part) for part in error["loc"][1:]), "message": error["msg"]} for error in exc.errors()
    ]
    return envelope(400, "invalid request", {"errors": problems})


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return envelope(exc.status_code, str(exc.detail))


EXCEPTION_HANDLERS = {
    ClientError: _client_error,
    ConnectionFailure: _unavailable,
    KafkaException: _unavailable,
    RequestValidationError: _invalid_request,
    HTTPException: _http_error,
}
