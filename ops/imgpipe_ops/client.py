"""A small client of the REST API: health, upload a CSV, poll until the request is finished."""

import time
from collections.abc import Callable

import httpx

from imgpipe_schemas import FINISHED


class ApiError(RuntimeError):
    """The API answered with an error: its status and the envelope's message (and payload, if any)."""

    def __init__(self, status: int, message: str, payload: object = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.payload = status, message, payload


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _checked(response: httpx.Response) -> dict:
    """The envelope of a 2xx answer; raises ApiError with the server's own message otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:500] or response.reason_phrase}
    if not response.is_success:
        body = body if isinstance(body, dict) else {}
        raise ApiError(response.status_code, str(body.get("message") or response.reason_phrase), body.get("payload"))
    if not (isinstance(body, dict) and isinstance(body.get("payload"), dict)):
        raise ApiError(response.status_code, f"not an imgpipe API answer: {response.text[:200]!r}")
    return body


def healthy(api: str) -> bool:
    """ingest answers /healthz with 200: it, the broker and the database are up."""
    try:
        return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def upload(
    api: str,
    csv_bytes: bytes,
    webhook_url: str | None = None,
    filename: str = "products.csv",
    api_key: str | None = None,
    idempotency_key: str | None = None,
    **form: str,
) -> str:
    """The request id; ``form`` adds fields such as ``quality`` and ``format``."""
    data = {**form, **({"webhook_url": webhook_url} if webhook_url else {})}
    headers = {**_auth(api_key), **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
    response = httpx.post(
        f"{api}/api/upload/",
        files={"file": (filename, csv_bytes, "text/csv")},
        data=data,
        headers=headers,
        timeout=120,
    )
    return _checked(response)["payload"]["request_id"]


def status(api: str, request_id: str, http: httpx.Client | None = None, api_key: str | None = None) -> dict:
    response = (http or httpx).get(
        f"{api}/api/output/", params={"request_id": request_id}, headers=_auth(api_key), timeout=10
    )
    return _checked(response)["payload"]


def wait_until_finished(
    api: str,
    request_id: str,
    timeout: float,
    on_progress: Callable[[dict], None] | None = None,
    poll_s: float = 0.05,
    api_key: str | None = None,
) -> dict:
    deadline = time.monotonic() + timeout
    with httpx.Client() as http:
        while True:
            payload = status(api, request_id, http, api_key)
            if on_progress:
                on_progress(payload)
            if payload["status"] in FINISHED:
                return payload
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {request_id} still {payload['status']} after {timeout:.0f} s: {payload}")
            time.sleep(poll_s)
