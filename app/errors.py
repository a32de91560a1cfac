"""One error family for expected failures, and the handlers that turn them into answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import ValidationError


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


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AegirError, _aegir_error)
