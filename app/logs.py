"""Process logs: plain text for people, or one JSON object a line (``AEGIR_LOG_FORMAT=json``)
for a log pipeline, carrying the run id and the request id of what the line is about."""

from __future__ import annotations

import json
import logging
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

run_id: ContextVar[str | None] = ContextVar("aegir_run_id", default=None)
request_id: ContextVar[str | None] = ContextVar("aegir_request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
REQUEST_ID_HEADER = b"x-request-id"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, var in (("run_id", run_id), ("request_id", request_id)):
            if (value := var.get()) is not None:
                body[key] = value
        if record.exc_info:
            body["error"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger's one handler, on stderr, in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def uvicorn_config(log_format: str) -> dict[str, Any]:
    """uvicorn's own loggers (errors, access) through the same handler and format."""
    factory = "app.logs.JsonFormatter" if log_format == "json" else "logging.Formatter"
    fmt: dict[str, Any] = {"()": factory}
    if log_format != "json":
        fmt["fmt"] = TEXT_FORMAT
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"aegir": fmt},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "aegir"}},
        "loggers": {
            "": {"handlers": ["stderr"], "level": "INFO"},
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }


class RequestId:
    """Each HTTP request's id: the caller's ``X-Request-ID`` (if sane) or a new one, in the
    log lines written while it is served, and echoed in the answer's header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER, b"").decode("latin-1")
        value = given if given and len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
        token = request_id.set(value)

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((REQUEST_ID_HEADER, value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            request_id.reset(token)
