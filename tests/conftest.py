"""Real services for every test: Redis, and the database (SQLite and PostgreSQL both)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Environment, Settings
from app.entities.team.models import Role
from app.main import create_app
from app.models import Base
from tests.fixtures.accounts import Account, api_client, make_account
from tests.fixtures.services import alembic_upgrade, postgres_server, redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _server):
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Each backend migrated once with ``alembic upgrade head``; the suite runs on both."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "aegir.sqlite3"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    alembic_upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        env=Environment.test,
        secret_key="test-secret-key-not-for-production",
        login_lockout=timedelta(seconds=2),
        database_url=database_url,
        redis_url=redis_url,
        var_dir=Path(tmp_path_factory.mktemp("var")),
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(autouse=True)
async def _empty_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Each test starts from empty tables (only for tests that use the app)."""
    yield
    if "app" not in request.fixturenames:
        return
    application: FastAPI = request.getfixturevalue("app")
    async with application.state.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
async def account(app: FastAPI) -> Account:
    """Alice: admin of team "ops" (not a site admin), with an API token."""
    return await make_account(app, "alice", team="ops", role=Role.admin)


@pytest.fixture
async def client(app: FastAPI, account: Account) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app, account) as http:
        yield http


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app, None) as http:
        yield http


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as db:
        yield db
