"""Liveness and readiness."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.fixtures.services import free_port


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_says_which_service_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    app: FastAPI = create_app(down)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aegir.test") as http:
            ready = await http.get("/readyz")
            assert (await http.get("/healthz")).status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["redis"].startswith("error")
