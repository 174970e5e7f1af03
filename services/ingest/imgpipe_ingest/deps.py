"""What a route may ask for. create_api puts the settings, the net policy and the API keys on app.state and
its lifespan the adapters, so that every app built (one per test, too) carries its own; routes reach them only here."""

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pymongo.asynchronous.database import AsyncDatabase

from imgpipe_ingest.acceptance import Acceptances
from imgpipe_ingest.adapters.idempotency import IdempotencyKeys
from imgpipe_ingest.adapters.requests import RequestStore
from imgpipe_ingest.auth import authenticate
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


def _keys(request: Request) -> IdempotencyKeys:
    return request.app.state.keys


def _acceptances(request: Request) -> Acceptances:
    return request.app.state.acceptances


SettingsDep = Annotated[Settings, Depends(_settings)]
Policy = Annotated[NetPolicy, Depends(_policy)]
Database = Annotated[AsyncDatabase, Depends(_database)]
Store = Annotated[RequestStore, Depends(_store)]
Blobs = Annotated[BlobStore, Depends(_blobs)]
Keys = Annotated[IdempotencyKeys, Depends(_keys)]
AcceptancesDep = Annotated[Acceptances, Depends(_acceptances)]


_bearer = HTTPBearer(auto_error=False, description="One of IMGPIPE_API_KEYS, when set")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of IMGPIPE_API_KEYS, when set")


def _owner(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    x_api_key: Annotated[str | None, Security(_api_key)],
) -> str | None:
    """The caller's owner id (auth.authenticate); the two schemes only describe it in the OpenAPI document."""
    return authenticate(request)


Owner = Annotated[str | None, Depends(_owner)]
