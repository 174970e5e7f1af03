"""Who is calling. With IMGPIPE_API_KEYS set every caller offers one of the keys, and the owner id derived
from it scopes what the caller sees: the requests it made, and those that have no owner.

FastAPI reads (spools, parses) a form body before it solves any dependency, so a dependency alone would
check the key of an upload only once the whole upload had been received. A KeyedRoute checks it first.
"""

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from imgpipe_ingest.envelope import ClientError

OWNER_ID_HEX = 32


def owner_id(api_key: str) -> str:
    """The owner stored with a request and an Idempotency-Key: a digest of the key, so that the database
    (its dumps, its backups) never holds a key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:OWNER_ID_HEX]


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, setting: str) -> "ApiKeys":
        return cls(tuple(key.strip() for key in setting.split(",") if key.strip()))

    def owner(self, authorization: str | None, x_api_key: str | None) -> str | None:
        """The caller's owner id; None while no keys are configured (anyone may call, and see everything).
        Raises ClientError(401) for a missing or unknown key."""
        if not self.keys:
            return None
        offered = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
        # Every key is compared, in constant time, so that the answer's timing tells nothing of the keys.
        matches = [hmac.compare_digest(offered.encode(), key.encode()) for key in self.keys]
        if not any(matches):
            raise ClientError(401, "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>")
        return owner_id(offered)


def authenticate(request: Request) -> str | None:
    """ApiKeys.owner of the request's headers, checked once per request."""
    if not hasattr(request.state, "owner"):
        api_keys: ApiKeys = request.app.state.api_keys
        request.state.owner = api_keys.owner(request.headers.get("authorization"), request.headers.get("x-api-key"))
    return request.state.owner


class KeyedRoute(APIRoute):
    """A route that needs an API key, checked before anything reads the request's body: an upload without
    a valid key is answered 401 with its body neither received nor spooled."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            authenticate(request)
            return await handler(request)

        return keyed
