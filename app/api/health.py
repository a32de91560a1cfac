from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import StateDep
from app.queue import QueueClient
from app.unavailable import RETRY_AFTER_SECONDS

router = APIRouter(tags=["health"])


PUBLIC: dict[str, object] = {"security": []}


@router.get("/healthz", summary="The process is up", openapi_extra=PUBLIC)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and Redis answer",
    openapi_extra=PUBLIC,
    responses={503: {"description": "The database or Redis does not answer"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    timeout = state.settings.redis_timeout.total_seconds()
    checks = {
        "database": await _database(state.engine, timeout),
        "redis": await _redis(state.redis, timeout),
    }
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse({"status": "unavailable", "checks": checks}, 503, headers=retry)


async def _database(engine: AsyncEngine, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds * 3), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready", and says why
        return f"error: {type(error).__name__}"
    return "ok"


async def _redis(redis: QueueClient, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            await redis.ping()
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok"
