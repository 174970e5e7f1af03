"""Sample photos and a local HTTP server that serves them and records what is posted to it."""

import io
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from imgpipe_schemas import CSV_COLUMNS


def photo_like_jpeg(width: int, height: int, seed: int, quality: int = 92) -> bytes:
    """Smooth shapes plus sensor-like grain: compresses like a photo, unlike pure noise or flat colour."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    base = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 6, size=(height, width, 3)).astype(np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Route:
    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalHttpServer:
    """Serves ``routes`` on GET, counting the requests for each path in ``fetched``; records every POST and
    answers it with the next of ``post_statuses``, then ``post_status`` (200)."""

    routes: dict[str, Route] = field(default_factory=dict)
    post_status: int = 200
    post_statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    fetched: Counter = field(default_factory=Counter)
    port: int = 0  # 0: any free port

    def __post_init__(self) -> None:
        server = self
        self._counting = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as real image servers and CDNs answer: every response carries its length.
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with server._counting:
                    server.fetched[self.path] += 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay_s:
                    time.sleep(route.delay_s)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(server.post_statuses.pop(0) if server.post_statuses else server.post_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = _QuietServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "LocalHttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LocalHttpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that goes away mid-answer (a worker killed, a fetch timed out) is its own business."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def products_csv(rows: list[tuple[int, str, list[str]]]) -> bytes:
    """A CSV in the assignment's format: S. No., Product Name, Input Image Urls (comma-separated, quoted)."""
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for serial, name, urls in rows:
        writer.writerow([serial, name, ",".join(urls)])
    return out.getvalue().encode()


# The photos of examples/products.csv, as `imgpipe samples` serves them.
EXAMPLE_PHOTOS = {
    f"/photos/{name}.jpg": seed
    for seed, name in enumerate(["hat-front", "hat-side", "scarf", "gloves-pair", "gloves-palm", "boots"])
}


def example_routes() -> dict[str, Route]:
    return {path: Route(photo_like_jpeg(1200, 800, seed=seed)) for path, seed in EXAMPLE_PHOTOS.items()}
