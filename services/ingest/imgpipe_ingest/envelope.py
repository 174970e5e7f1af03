"""The seed's response envelope, {"status", "message", "payload"}, how every error is answered in it, and how
the OpenAPI document describes it: a typed envelope per answer, and each route's real error statuses."""

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Literal, TypeVar

from confluent_kafka import KafkaException
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException

from imgpipe_runtime.outages import is_outage

log = logging.getLogger(__name__)

P = TypeVar("P")


class Envelope(BaseModel, Generic[P]):
    """Every JSON answer: ``status`` is "success" below 400, else "error"."""

    status: Literal["success", "error"]
    message: str
    payload: P


def envelope(code: int, message: str, payload: Any = None) -> JSONResponse:
    status = "success" if code < 400 else "error"
    return JSONResponse({"status": status, "message": message, "payload": payload}, status_code=code)


class CsvProblem(BaseModel):
    row: int | None = Field(description="Data row, counted from 1; null for the file as a whole")
    column: str | None
    message: str


class CsvProblems(BaseModel):
    errors: list[CsvProblem] = Field(description="The first 100 problems")
    errors_total: int = Field(description="How many problems the file has")


class FieldProblem(BaseModel):
    field: str = Field(description="The form field, query parameter or header")
    message: str


class FieldProblems(BaseModel):
    errors: list[FieldProblem]


class Refused(Envelope[None]):
    """An error with nothing more to say than its message."""


class BadRequest(Envelope[CsvProblems | FieldProblems | None]):
    """400: the CSV's problems (upload), the fields that failed validation, or only a message."""


ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    400: (BadRequest, "Invalid request"),
    401: (Refused, "No valid API key (only while IMGPIPE_API_KEYS is set)"),
    404: (Refused, "Not found, or made with another API key"),
    409: (Refused, "The Idempotency-Key was used for a different upload, or its upload is still being accepted"),
    410: (Refused, "The request expired (IMGPIPE_RETENTION_DAYS): its rows and files were deleted"),
    413: (Refused, "The request body is over IMGPIPE_MAX_UPLOAD_BYTES"),
    503: (
        Refused,
        "The database, the file store or the broker is unreachable or cannot write (a full disk); "
        "retry after Retry-After seconds",
    ),
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses``: the error statuses it really answers, each with its envelope; a description
    named ``e404`` (and so on) replaces the default one of that status."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model, description = ERRORS[code]
        documented[code] = {"model": model, "description": descriptions.get(f"e{code}", description)}
        if code == 503:
            documented[code]["headers"] = RETRY_AFTER
    return documented


class ClientError(Exception):
    def __init__(self, code: int, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.payload = code, message, payload


async def _client_error(_: Request, exc: ClientError) -> JSONResponse:
    return envelope(exc.code, exc.message, exc.payload)


RETRY_AFTER_S = 5


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("answering 503: %r", exc)
    response = envelope(
        503,
        "the service cannot store or read data right now (database, file store or broker unavailable); "
        f"retry in {RETRY_AFTER_S} s",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def _unavailable_or_fault(request: Request, exc: Exception) -> JSONResponse:
    """A database or file-store error that is an outage (imgpipe_runtime.outages: unreachable, or a full
    disk) is a 503; any other is the server's own fault, left to the server's 500."""
    if not is_outage(exc):
        raise exc
    return await _unavailable(request, exc)


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        {"field": ".".join(str(part) for part in error["loc"][1:]), "message": error["msg"]} for error in exc.errors()
    ]
    return envelope(400, "invalid request", {"errors": problems})


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return envelope(exc.status_code, str(exc.detail))


EXCEPTION_HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ClientError: _client_error,
    PyMongoError: _unavailable_or_fault,
    OSError: _unavailable_or_fault,
    KafkaException: _unavailable,
    RequestValidationError: _invalid_request,
    HTTPException: _http_error,
}
