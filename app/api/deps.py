"""Dependency vocabulary shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.config import Settings
from app.db import session_scope
from app.errors import Unauthorized
from app.queue import QueueClient
from app.security.auth import CSRF_HEADER, SAFE_METHODS, authenticate, check_csrf
from app.security.principal import Principal


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    writes = request.method not in SAFE_METHODS
    async with session_scope(request.app.state.sessionmaker, writes=writes) as session:
        yield session


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _redis(request: Request) -> QueueClient:
    redis: QueueClient = request.app.state.redis
    return redis


# scope="function": commit before the answer is sent, so that what a client was told
# was created is there when it asks again (and a failed commit is the answer).
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[QueueClient, Depends(_redis)]


async def _principal(request: Request, db: SessionDep) -> Principal:
    """Every API route's gate: a bearer token, or a session cookie plus CSRF for writes.

    Under /api/ the AuthGate middleware has done it already, before the body was read.
    """
    found = getattr(request.state, "principal", None)
    if isinstance(found, Principal):
        return found
    principal = await authenticate(db, request.headers.get("authorization"), request.session)
    if principal is None:
        raise Unauthorized("sign in at /login, or send Authorization: Bearer <token>")
    if principal.via == "session" and request.method not in SAFE_METHODS:
        check_csrf(request.session, request.headers.get(CSRF_HEADER))
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
Authenticated = Depends(_principal)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
NameFilter = Annotated[
    str | None,
    Query(max_length=253, pattern=r"^[A-Za-z0-9._-]*$", description="Part of the name."),
]
