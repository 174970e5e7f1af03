"""What a route may ask for. create_api puts the settings and the net policy on app.state and its lifespan
the adapters, so that every app built (one per test, too) carries its own; routes reach them only here."""

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_bus import EventProducer
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.envelope import ClientError
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.blobs import BlobStore
from imgpipe_runtime.netpolicy import NetPolicy


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _policy(request: Request) -> NetPolicy:
    return request.app.state.policy


def _database(request: Request) -> AsyncDatabase:
    return request.app.state.db


def _store(request: Request) -> RequestStore:
    return request.app.state.store


def _blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


def _producer(request: Request) -> EventProducer:
    return request.app.state.producer


def _keys(request: Request) -> IdempotencyKeys:
    return request.app.state.keys


SettingsDep = Annotated[Settings, Depends(_settings)]
Policy = Annotated[NetPolicy, Depends(_policy)]
Database = Annotated[AsyncDatabase, Depends(_database)]
Store = Annotated[RequestStore, Depends(_store)]
Blobs = Annotated[BlobStore, Depends(_blobs)]
Producer = Annotated[EventProducer, Depends(_producer)]
Keys = Annotated[IdempotencyKeys, Depends(_keys)]


def require_api_key(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """With IMGPIPE_API_KEYS set: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    api_keys = [key.strip() for key in settings.api_keys.split(",") if key.strip()]
    if not api_keys:
        return
    offered = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
    if not any(hmac.compare_digest(offered.encode(), key.encode()) for key in api_keys):
        raise ClientError(401, "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>")


ApiKeyRequired = Depends(require_api_key)
