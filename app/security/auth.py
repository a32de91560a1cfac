"""Authentication: a bearer token, or a signed session cookie (with CSRF for writes)."""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.entities.team import repository as teams
from app.entities.token import repository as tokens
from app.entities.user import repository as users
from app.entities.user.models import User
from app.errors import Forbidden, Unauthorized
from app.security.principal import Principal
from app.security.tokens import token_hash

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
TOKEN_TOUCH = timedelta(minutes=1)
TOUCH = "touch_token"


class PrincipalCache:
    """Who each bearer token is, kept ``ttl`` seconds in this process: a request signed
    with a token seen lately reads nothing from the database to authenticate.

    What it costs: a token revoked, or a membership changed, by *another* process (the
    CLI, another API process) still works as before for up to ``ttl`` seconds. Changes
    made through this process clear the cache at once (``clear``), and an expiry is
    never overstepped.
    """

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self.ttl = 0.0
        self._entries: dict[str, tuple[Principal, float, datetime]] = {}

    def get(self, hashed: str) -> Principal | None:
        found = self._entries.get(hashed)
        if found is None:
            return None
        principal, until, expires_at = found
        if time.monotonic() >= until or utcnow() >= expires_at:
            del self._entries[hashed]
            return None
        return principal

    def put(self, hashed: str, principal: Principal, expires_at: datetime) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[hashed] = (principal, time.monotonic() + self.ttl, expires_at)

    def clear(self) -> None:
        self._entries.clear()


principals = PrincipalCache()


def forget_principals() -> None:
    """Tokens, users or memberships changed here: authenticate each token afresh."""
    principals.clear()


async def touch_token(db: AsyncSession, token_id: uuid.UUID) -> None:
    """Note a token's last use (at most once a minute)."""
    await tokens.mark_used(db, token_id, utcnow())


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use; forms and HTMX send it back."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf(session: Mapping[str, Any], sent: str | None) -> None:
    expected = session.get("csrf")
    if not sent or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise Forbidden("the CSRF token is missing or wrong: reload the page and try again")


async def authenticate(
    db: AsyncSession, authorization: str | None, session: Mapping[str, Any]
) -> Principal | None:
    if authorization:
        return await _from_token(db, authorization)
    user_id = session.get("uid")
    if not isinstance(user_id, str):
        return None
    try:
        user = await users.get(db, uuid.UUID(user_id))
    except ValueError:
        return None
    return await principal_for(db, user, "session") if user is not None else None


async def _from_token(db: AsyncSession, authorization: str) -> Principal:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("send the token as: Authorization: Bearer <token>")
    hashed = token_hash(value.strip())
    cached = principals.get(hashed)
    if cached is not None:
        return cached
    token = await tokens.by_hash(db, hashed)
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise Unauthorized("this token is not valid: unknown, revoked or expired")
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH:
        db.info[TOUCH] = token.id  # recorded by the caller, in a writing transaction
    user = await users.get_one(db, token.user_id)
    principal = await principal_for(db, user, "token")
    principals.put(hashed, principal, token.expires_at)
    return principal


async def principal_for(db: AsyncSession, user: User, via: Any) -> Principal:
    roles = await teams.roles_of(db, user.id)
    return Principal(user.id, user.username, user.is_admin, roles, via)
