"""The pages' links: the templates' quick ``url_for`` answers what Starlette's does."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from app.web._render import templates


def _request(app: FastAPI) -> Request:
    headers = [(b"host", b"aegir.test:8000")]
    scope = {"type": "http", "app": app, "router": app.router, "scheme": "https",
             "server": ("aegir.test", 8000), "path": "/", "root_path": "",
             "headers": headers, "query_string": b""}  # fmt: skip
    return Request(scope)


async def test_every_link_a_page_makes_is_the_one_the_router_makes(app: FastAPI) -> None:
    request = _request(app)
    url_for: Any = templates.env.globals["url_for"]
    some_id = uuid.uuid4()
    links: list[tuple[str, dict[str, object]]] = [
        ("entity_page", {"plural": "sites", "entity_id": some_id}),
        ("entity_page", {"plural": "servers", "entity_id": uuid.uuid4()}),
        ("entity_list", {"plural": "platforms"}),
        ("run_page", {"run_id": some_id}),
        ("run_log", {"run_id": some_id}),  # a websocket: wss
        ("runs_page", {}),
        ("static", {"path": "css/app.css"}),
        ("swagger", {"path": "swagger-ui.css"}),
    ]
    for name, params in links * 2:  # the second time from what the first worked out
        ours = url_for({"request": request}, name, **params)
        assert ours == request.url_for(name, **params), name
    assert str(url_for({"request": request}, "run_log", run_id=some_id)).startswith("wss://")
