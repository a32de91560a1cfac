"""``GET /metrics``: Prometheus's text format, for every process at once (``app.metrics``).

Protected: with ``AEGIR_METRICS_TOKEN`` set, Prometheus sends it as a bearer token; without,
only a site admin's token or session may read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from redis.exceptions import RedisError

from app import metrics
from app.api.deps import SessionDep, StateDep
from app.db import utcnow
from app.entities.run import repository as runs
from app.errors import Forbidden, Unauthorized
from app.security.auth import authenticate
from app.state import AppState

router = APIRouter(include_in_schema=False)
REPORT_EVERY = 20.0


class OpenSockets:
    """This process's open websockets, told to Redis on each change and every 20 s."""

    def __init__(self) -> None:
        self.count = 0
        self.process = metrics.process_id()

    async def changed(self, state: AppState, by: int) -> None:
        self.count += by
        with contextlib.suppress(RedisError, OSError):
            await metrics.set_subscribers(state.redis, self.process, self.count)

    @contextlib.asynccontextmanager
    async def held(self, state: AppState) -> AsyncIterator[None]:
        """Counted while the block runs."""
        await self.changed(state, 1)
        try:
            yield
        finally:
            await self.changed(state, -1)

    async def report(self, state: AppState) -> None:
        while True:
            with contextlib.suppress(RedisError, OSError):
                await metrics.set_subscribers(state.redis, self.process, self.count)
            await asyncio.sleep(REPORT_EVERY)


open_sockets = OpenSockets()


@router.get("/metrics")
async def read_metrics(request: Request, session: SessionDep, state: StateDep) -> Response:
    await _admit(request, session, state.settings.metrics_token)
    snapshot = metrics.Snapshot()
    snapshot.runs_by_status = await runs.count_by_status(session)
    snapshot.queued_runs = snapshot.runs_by_status.get("queued", 0)
    oldest = await runs.oldest_queued(session)
    if oldest is not None:
        snapshot.oldest_queued_seconds = max(0.0, (utcnow() - oldest).total_seconds())
    await metrics.read_redis(state.redis, snapshot)
    return Response(metrics.render(snapshot), media_type=metrics.CONTENT_TYPE)


async def _admit(request: Request, session: SessionDep, token: str) -> None:
    header = request.headers.get("authorization") or ""
    if token:
        given = header.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("send Authorization: Bearer <AEGIR_METRICS_TOKEN>")
        return
    principal = await authenticate(session, header or None, request.session)
    if principal is None:
        raise Unauthorized("a site admin's token, or set AEGIR_METRICS_TOKEN for Prometheus")
    if not principal.is_admin:
        raise Forbidden("metrics are for site admins (or AEGIR_METRICS_TOKEN)")
