"""ingest's Prometheus metrics: every HTTP request by method, route template and status, with its duration,
served with the process's CPU and memory at ``GET /metrics`` on a small port of its own (IMGPIPE_METRICS_PORT),
like the faust services' ports. Never on the API's port: the API may be published to other machines,
where callers need an API key, and the metrics are for a scraper beside the service.

The route label is the matched route's template (``/api/files/{request_id}/output.csv``), never the path
itself, so that the number of series stays bounded whatever callers send: a path that matches no route
is ``unmatched``. The route is matched here, before the app runs, so that an answer the app gives before
routing (a body refused with 413) is labelled with the route it was sent to.
"""

import logging
import time

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter("imgpipe_http_requests", "HTTP requests answered by ingest.", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "imgpipe_http_request_seconds",
    "Time from an HTTP request's arrival until its answer was sent, whole body included.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def instrument(app: FastAPI) -> None:
    """Counts and times every request (the outermost middleware of those added so far)."""
    app.add_middleware(HttpMetrics, routes=app.router.routes)


def flat_routes(routes) -> list:
    """The routes themselves, out of the routers that FastAPI includes (each keeps its ``original_router``)."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        found.extend(flat_routes(included.routes) if included is not None else [route])
    return found


def route_template(routes, scope: Scope) -> str:
    """The template of the route that serves ``scope``; a route whose path matches but not its method
    (answered 405) counts as that route."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", None) or UNMATCHED
        if match == Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)
    return partial or UNMATCHED


class HttpMetrics:
    def __init__(self, app: ASGIApp, routes) -> None:
        self.app = app
        self._routes = routes
        self._flat: list | None = None

    @property
    def routes(self) -> list:
        """Flattened at the first request, once every route has been added."""
        if self._flat is None:
            self._flat = flat_routes(self._routes)
        return self._flat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = route_template(self.routes, scope)
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it started an answer

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
