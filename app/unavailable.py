"""When the database does not answer: a clear 503 with ``Retry-After``, not a 500.

A database that is stopped, restarting or out of reach fails every request that
touches it. That is no bug in the request: the client should try again shortly (and a
load balancer sends it elsewhere, as ``/readyz`` answers 503 too). The relay uses the
same test to tell a database outage from a bug.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# PostgreSQL's SQLSTATEs for "no connection": class 08 (connection exception), and
# 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
UNREACHABLE_SQLSTATES = ("08", "57P0")


def database_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached (not that a query is wrong)."""
    if isinstance(error, ConnectionError):  # asyncpg's connect: refused, reset
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    cause: BaseException | None = error.orig
    while cause is not None:
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(UNREACHABLE_SQLSTATES):
            return True
        cause = cause.__cause__
    return False


def unavailable_response() -> JSONResponse:
    return JSONResponse(
        {"detail": "the database does not answer; try again shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class DatabaseUnavailable:
    """ASGI middleware, outside the others: a request that failed because the database
    is unreachable is answered 503 + ``Retry-After``, wherever it failed (the API's
    authentication gate reads the database before any route does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            if started or not database_unreachable(error):
                raise
            # One line, no traceback: an outage must not bury the log under stacks.
            what = f"{scope['method']} {scope['path']}"
            logger.warning("%s: database unreachable (%s); answered 503", what, error)
            await unavailable_response()(scope, receive, send)
