"""Authenticate API requests before anything reads their body.

A dependency would run only after FastAPI has parsed the body, so a stranger sending
malformed JSON would learn about our validation before being told to sign in. This
ASGI middleware answers 401 (or 403 for a missing CSRF token) first.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.db import session_scope
from app.errors import AegirError, Unauthorized
from app.security.auth import (
    CSRF_HEADER,
    SAFE_METHODS,
    TOUCH,
    authenticate,
    check_csrf,
    touch_token,
)
from app.state import app_state

logger = logging.getLogger(__name__)


async def _touch(sessionmaker: async_sessionmaker[AsyncSession], token_id: uuid.UUID) -> None:
    try:
        async with session_scope(sessionmaker) as db:
            await touch_token(db, token_id)
    except SQLAlchemyError:
        logger.info("a token's last use was not recorded this time", exc_info=True)


class AuthGate:
    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            sessionmaker = app_state(scope["app"]).sessionmaker
            async with sessionmaker() as db:
                principal = await authenticate(
                    db, request.headers.get("authorization"), scope.get("session", {})
                )
                touched = db.info.get(TOUCH)
            if touched is not None:
                await _touch(sessionmaker, touched)
            if principal is None:
                raise Unauthorized("sign in at /login, or send Authorization: Bearer <token>")
            if principal.via == "session" and request.method not in SAFE_METHODS:
                check_csrf(scope.get("session", {}), request.headers.get(CSRF_HEADER))
        except AegirError as error:
            headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
            response = JSONResponse(
                {"detail": error.message}, status_code=error.status_code, headers=headers
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
