"""What the application holds for its lifetime, typed: the one home of ``app.state``.

Settings, the catalogue and the secret box are set when the app is made; the engine,
the sessionmaker, the Redis client and the pub/sub hub when its lifespan starts. Code
reads them through ``app_state()``, never through loose ``app.state.x`` attributes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.datastructures import State

from app.api.hub import Hub
from app.catalog.registry import Catalog
from app.config import Settings
from app.queue import QueueClient
from app.security.crypto import SecretBox


class AppState(State):
    """``app.state``, with the type of each thing it holds declared."""

    settings: Settings
    catalog: Catalog
    secret_box: SecretBox
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: QueueClient
    hub: Hub  # the process's one pub/sub connection, for its websocket clients


def app_state(app: Any) -> AppState:
    """The state of an application made by ``app.main.create_app``."""
    state = app.state
    if not isinstance(state, AppState):
        raise TypeError("this application was not made by app.main.create_app")
    return state
