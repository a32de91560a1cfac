"""Authenticate API requests before anything reads their body.

A dependency would run only after FastAPI has parsed the body, so a stranger sending
malformed JSON would learn about our validation before being told to sign in. This
ASGI middleware answers 401 (or 403 for a missing CSRF token) first.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import AegirError, Unauthorized
from app.security.auth import CSRF_HEADER, SAFE_METHODS, authenticate, check_csrf


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
            async with scope["app"].state.sessionmaker() as db:
                principal = await authenticate(
                    db, request.headers.get("authorization"), scope.get("session", {})
                )
                await db.commit()  # a token's last use
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
