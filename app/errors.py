"""One error family for expected failures, and the handlers that turn them into answers.

Unexpected errors too: a clean 500 in JSON, logged, on a connection that stays open.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import WritesBusy

logger = logging.getLogger(__name__)


class AegirError(Exception):
    status_code = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class NotFound(AegirError):
    status_code = 404


class Unauthorized(AegirError):
    status_code = 401


class Forbidden(AegirError):
    status_code = 403


class Conflict(AegirError):
    status_code = 409


class Unavailable(AegirError):
    status_code = 503


class InvalidInput(AegirError):
    """A 422 in FastAPI's own shape: a list of ``{loc, msg, type}``, each naming its field."""

    status_code = 422

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = list(errors)

    @classmethod
    def field(cls, loc: Sequence[str | int], msg: str, type_: str = "value_error") -> InvalidInput:
        return cls([{"loc": list(loc), "msg": msg, "type": type_}])

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: Sequence[str | int]) -> InvalidInput:
        return cls(
            [
                {
                    "loc": [*prefix, *e["loc"]],
                    "msg": e["msg"],
                    "type": e["type"],
                }
                for e in error.errors(include_url=False, include_input=False)
            ]
        )


async def _aegir_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AegirError)
    if isinstance(exc, InvalidInput):
        return JSONResponse({"detail": jsonable_encoder(exc.errors)}, status_code=422)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


async def _database_busy(_request: Request, exc: Exception) -> JSONResponse:
    """A write that got no turn, or no pooled connection, in time: come back shortly."""
    if isinstance(exc, WritesBusy):
        detail = f"the database is busy with other writes: {exc}"
    else:
        detail = "every database connection is busy; try again"
    return JSONResponse(
        {"detail": detail},
        status_code=503,
        headers={"Retry-After": str(WritesBusy.retry_after)},
    )


INTERNAL_ERROR = {"detail": "internal error; it has been logged"}


async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette's ServerErrorMiddleware sends this, then re-raises for ErrorBoundary.
    return JSONResponse(INTERNAL_ERROR, status_code=500)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 with ``Allow`` listing every method of the path, not only those of the one route
    Starlette happened to match (FastAPI makes a route per method)."""
    if not isinstance(exc, StarletteHTTPException) or exc.status_code != 405:
        return await http_exception_handler(request, cast(StarletteHTTPException, exc))
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods.update(route.methods)
    methods.discard("HEAD")  # answered with GET, and not in the document
    allow = ", ".join(sorted(methods))
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _method_not_allowed)
    app.add_exception_handler(AegirError, _aegir_error)
    app.add_exception_handler(WritesBusy, _database_busy)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_exception_handler(Exception, _unexpected)


class ErrorBoundary:
    """The outermost layer: an unexpected error is logged and answered, and that is all.

    Starlette's ServerErrorMiddleware answers 500 and then re-raises, so that servers and
    test clients see the error; uvicorn then closes the connection, under a client that
    may already have sent its next request on it (keep-alive): that request got no
    answer at all. Here the error stops once the 500 is sent, and the connection serves
    the next request. Only a response cut off half-way still closes it: nothing else
    can tell the client that what it got was incomplete.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = ended = False

        async def watched(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started and not ended:
                raise
            logger.exception(
                "unexpected error in %s %s; answered 500", scope["method"], scope["path"]
            )
            if not started:
                await JSONResponse(INTERNAL_ERROR, status_code=500)(scope, receive, send)
