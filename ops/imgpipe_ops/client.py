"""A small client of the REST API: health, upload a CSV, poll until the request is finished."""

import time
from collections.abc import Callable

import httpx

FINISHED = ("SUCCESS", "FAILED")


def healthy(api: str) -> bool:
    """ingest answers /healthz with 200: it, the broker and the database are up."""
    try:
        return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def upload(
    api: str, csv_bytes: bytes, webhook_url: str | None = None, filename: str = "products.csv", **form: str
) -> str:
    """The request id; ``form`` adds fields such as ``quality`` and ``format``."""
    data = {**form, **({"webhook_url": webhook_url} if webhook_url else {})}
    response = httpx.post(
        f"{api}/api/upload/", files={"file": (filename, csv_bytes, "text/csv")}, data=data, timeout=60
    )
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"upload refused ({response.status_code}): {body}")
    return body["payload"]["request_id"]


def status(api: str, request_id: str, http: httpx.Client | None = None) -> dict:
    response = (http or httpx).get(f"{api}/api/output/", params={"request_id": request_id}, timeout=10)
    response.raise_for_status()
    return response.json()["payload"]


def wait_until_finished(
    api: str,
    request_id: str,
    timeout: float,
    on_progress: Callable[[dict], None] | None = None,
    poll_s: float = 0.05,
) -> dict:
    deadline = time.monotonic() + timeout
    with httpx.Client() as http:
        while True:
            payload = status(api, request_id, http)
            if on_progress:
                on_progress(payload)
            if payload["status"] in FINISHED:
                return payload
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {request_id} still {payload['status']} after {timeout:.0f} s: {payload}")
            time.sleep(poll_s)
