"""``imgpipe upload`` and ``imgpipe status``: the REST API from a shell, for people and scripts.

Exit codes, so that a script can tell them apart: 0 the request was accepted (or, with ``--wait``,
finished SUCCESS); 1 it finished FAILED, or did not finish within ``--timeout``; 2 the API refused
(the server's message is printed) or could not be reached, or a local file could not be read or written.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import get_args

import httpx
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from tqdm import tqdm

from imgpipe_ops.client import FINISHED, ApiError, status, upload
from imgpipe_schemas.events import PresetName

OK, FAILED, REFUSED = 0, 1, 2


class ClientSettings(BaseSettings):
    """Where the API is and the key to use: ``IMGPIPE_API_URL``, ``IMGPIPE_API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", extra="ignore")

    api_url: str = Field("http://127.0.0.1:8000", description="The API's base URL.")
    api_key: str | None = Field(None, description="Sent as Authorization: Bearer <key>.")

    @field_validator("api_url")
    @classmethod
    def _without_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


def add_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("upload", help="upload a products CSV; --wait follows it to the end")
    up.add_argument("csv", type=Path, help="the products CSV")
    up.add_argument("--webhook-url", help="where to POST the signed completion webhook")
    up.add_argument(
        "--quality",
        type=_quality,
        help="encoder quality, 1-95 (server default 50), or auto, auto:eco, auto:good, auto:best: per image the "
        "lowest quality that still looks like the source (auto = auto:good)",
    )
    up.add_argument(
        "--format", choices=["jpeg", "webp", "png", "avif", "keep", "auto"], help="output format (server default jpeg)"
    )
    up.add_argument("--max-width", type=int, help="widest output in pixels, 1-20000; never upscaled")
    up.add_argument("--max-height", type=int, help="tallest output in pixels, 1-20000; never upscaled")
    up.add_argument(
        "--fit", choices=["contain", "pad", "cover"], help="inside the box (default), exactly it, or fill and crop"
    )
    up.add_argument("--background", help="pad's colour, RRGGBB hex (server default ffffff)")
    up.add_argument(
        "--progressive",
        action=argparse.BooleanOptionalAction,
        help="JPEG output progressive or baseline (server default progressive)",
    )
    up.add_argument(
        "--metadata",
        choices=["strip", "keep_copyright", "keep"],
        help="what outputs keep of their sources' metadata (server default strip)",
    )
    up.add_argument("--keep-gps", action="store_true", default=None, help="with --metadata keep: GPS too")
    up.add_argument(
        "--preset",
        choices=get_args(PresetName),
        help="a marketplace preset: its format and size defaults (the options given override them) and its rules, "
        "each output checked against them (Image Checks in the output CSV)",
    )
    up.add_argument("--idempotency-key", help="the same key and file again: the same request, not a new one")
    up.add_argument("--wait", action="store_true", help="show progress until the request finishes")
    up.add_argument("--output", type=Path, metavar="FILE", help="download the output CSV to FILE (implies --wait)")
    up.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits at most (default 3600)")
    up.set_defaults(func=upload_command)
    st = commands.add_parser("status", help="a request's status and progress")
    st.add_argument("request_id")
    st.set_defaults(func=status_command)


QUALITY_MODES = ("auto", "auto:eco", "auto:good", "auto:best")


def _quality(value: str) -> str:
    """A fixed quality or a quality mode, checked before anything is sent."""
    if value in QUALITY_MODES or (value.isdigit() and 1 <= int(value) <= 95):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is neither 1-95 nor one of {', '.join(QUALITY_MODES)}")


def upload_command(args: argparse.Namespace) -> int:
    settings = ClientSettings()
    try:
        data = args.csv.read_bytes()
    except OSError as exc:
        return _refused(f"cannot read {args.csv}: {exc.strerror or exc}")
    if args.output is not None and (problem := _unwritable(args.output)):
        return _refused(f"cannot write the output CSV to {args.output}: {problem}")
    form = {name: str(value) for name, value in _form_fields(args).items() if value is not None}
    try:
        request_id = upload(
            settings.api_url, data, args.webhook_url, args.csv.name, settings.api_key, args.idempotency_key, **form
        )
    except ApiError as exc:
        return _refused(_explained(exc))
    except httpx.HTTPError as exc:
        return _refused(f"cannot reach the API at {settings.api_url}: {exc}")
    print(f"request {request_id}")
    if not (args.wait or args.output):
        print(f"status: imgpipe status {request_id}")
        return OK
    return _follow(settings, request_id, args.timeout, args.output)


def _form_fields(args: argparse.Namespace) -> dict:
    """The upload form's optional fields, by their names in the API."""
    return {
        "quality": args.quality,
        "format": args.format,
        "max_width": args.max_width,
        "max_height": args.max_height,
        "fit": args.fit,
        "background": args.background,
        "progressive": None if args.progressive is None else str(args.progressive).lower(),
        "metadata": args.metadata,
        "keep_gps": "true" if args.keep_gps else None,
        "preset": args.preset,
    }


def _follow(settings: ClientSettings, request_id: str, timeout: float, output: Path | None) -> int:
    deadline = time.monotonic() + timeout
    bar = None
    try:
        with httpx.Client() as http:
            while True:
                payload = _poll(settings, request_id, http, deadline)
                progress = payload["progress"]
                if bar is None:
                    bar = tqdm(total=progress["images_total"], unit="img", desc="images", file=sys.stderr)
                bar.n = progress["images_ok"] + progress["images_failed"]
                bar.set_postfix_str(
                    f"rows {progress['rows_done']}/{progress['rows_total']}, failed {progress['images_failed']}",
                    refresh=True,
                )
                if payload["status"] in FINISHED:
                    break
                if time.monotonic() > deadline:
                    bar.close()
                    print(f"request {request_id} still {payload['status']} after {timeout:.0f} s", file=sys.stderr)
                    return FAILED
                time.sleep(0.5)
            bar.close()
            print(f"{payload['status']}: {_counts(progress)}")
            print(f"output CSV: {payload['output_file_url']}")
            if output is not None:
                response = http.get(payload["output_file_url"], timeout=60)
                if not response.is_success:
                    return _refused(f"the output CSV could not be downloaded: {response.status_code}")
                try:
                    output.write_bytes(response.content)
                except OSError as exc:
                    return _refused(f"cannot write the output CSV to {output}: {exc.strerror or exc}")
                print(f"saved to {output}")
    except ApiError as exc:
        return _refused(_explained(exc))
    except httpx.HTTPError as exc:
        return _refused(f"cannot reach the API at {settings.api_url}: {exc}")
    return OK if payload["status"] == "SUCCESS" else FAILED


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot take the output CSV, checked before uploading, so that no request is made for
    nothing."""
    if path.is_dir():
        return "it is a directory"
    folder = path.parent
    if not folder.is_dir():
        return f"no such directory: {folder}"
    if not os.access(path if path.exists() else folder, os.W_OK):
        return "permission denied"
    return None


def _poll(settings: ClientSettings, request_id: str, http: httpx.Client, deadline: float) -> dict:
    """The request's status. A restarting API (503, a refused connection, a slow answer) is waited for until
    the deadline: the request was accepted and goes on meanwhile."""
    delay = 0.5
    while True:
        try:
            return status(settings.api_url, request_id, http, settings.api_key)
        except ApiError as exc:
            if exc.status < 500 and exc.status != 429 or time.monotonic() > deadline:
                raise
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def status_command(args: argparse.Namespace) -> int:
    settings = ClientSettings()
    try:
        payload = status(settings.api_url, args.request_id, api_key=settings.api_key)
    except ApiError as exc:
        return _refused(_explained(exc))
    except httpx.HTTPError as exc:
        return _refused(f"cannot reach the API at {settings.api_url}: {exc}")
    print(f"{payload['status']}: {_counts(payload['progress'])}")
    if payload.get("output_file_url"):
        print(f"output CSV: {payload['output_file_url']}")
    for webhook in payload.get("webhooks") or []:
        outcomes = ", ".join(attempt["outcome"] for attempt in webhook["attempts"]) or "none yet"
        print(f"webhook {webhook['url']}: {webhook['state']} (attempts: {outcomes})")
    return FAILED if payload["status"] == "FAILED" else OK


def _counts(progress: dict) -> str:
    return (
        f"rows {progress['rows_done']}/{progress['rows_total']}, images {progress['images_ok']} ok, "
        f"{progress['images_failed']} failed of {progress['images_total']}"
    )


def _explained(exc: ApiError) -> str:
    lines = [f"the API answered {exc.status}: {exc.message}"]
    if isinstance(exc.payload, dict):
        for problem in (exc.payload.get("errors") or [])[:20]:
            lines.append(f"  row {problem.get('row')}, {problem.get('column')}: {problem.get('message')}")
    return "\n".join(lines)


def _refused(message: str) -> int:
    print(message, file=sys.stderr)
    return REFUSED
