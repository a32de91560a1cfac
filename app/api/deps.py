"""Dependency vocabulary shared by the routers: the app's state, the session, who asks.

Every dependency is ``async def``, even those that only read the app's state: FastAPI
runs a plain ``def`` dependency in its thread pool, a thread hop each per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app import faults
from app.catalog.registry import Catalog
from app.config import Settings
from app.db import session_scope
from app.errors import Unauthorized
from app.queue import QueueClient
from app.security.auth import CSRF_HEADER, SAFE_METHODS, authenticate, check_csrf
from app.security.crypto import SecretBox
from app.security.principal import Principal
from app.state import AppState, app_state


async def _state(request: Request) -> AppState:
    return app_state(request.app)


StateDep = Annotated[AppState, Depends(_state)]


async def _session(request: Request, state: StateDep) -> AsyncIterator[AsyncSession]:
    writes = request.method not in SAFE_METHODS
    async with session_scope(state.sessionmaker, writes=writes) as session:
        yield session
        if writes:
            faults.point("api-before-commit")
    if writes:
        faults.point("api-after-commit")


async def _catalog(state: StateDep) -> Catalog:
    return state.catalog


async def _settings(state: StateDep) -> Settings:
    return state.settings


async def _redis(state: StateDep) -> QueueClient:
    return state.redis


async def _secret_box(state: StateDep) -> SecretBox:
    return state.secret_box


# scope="function": commit before the answer is sent, so that what a client was told
# was created is there when it asks again (and a failed commit is the answer).
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[QueueClient, Depends(_redis)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]


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


class SignInRequired(Exception):
    """Raised by the pages' gate; the page route class answers with a redirect."""


async def _page_principal(request: Request, session: SessionDep) -> Principal:
    """Every dashboard page's gate: a signed-in session (forms check their CSRF token)."""
    principal = await authenticate(session, None, request.session)
    if principal is None:
        raise SignInRequired
    request.state.principal = principal  # the layout shows who is signed in
    return principal


PageUser = Annotated[Principal, Depends(_page_principal)]
SignedIn = Depends(_page_principal)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
NameFilter = Annotated[
    str | None,
    Query(max_length=253, pattern=r"^[A-Za-z0-9._-]*$", description="Part of the name."),
]
