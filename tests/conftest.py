"""Real services for every test: Redis, and the database (SQLite and PostgreSQL both).

Also the test tiers: markers by path (see ``TIER_BY_PATH``), and a summary of what was
skipped and why.
"""

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

# The tiers that start the whole system as processes, or programs besides Python;
# `make test-fast` leaves them out. Marked by where the tests live, so a new test
# file in these places is in its tier without having to say so.
TIER_BY_PATH = {
    "tests/e2e/": "e2e",
    "tests/kubernetes/e2e/": "e2e",
    "tests/hosting/": "hosting",
    "tests/browser/": "browser",
    "tests/kubernetes/browser/": "browser",
    "tests/test_openapi_fuzz.py": "fuzz",
    "tests/faults/": "slow",
}
# Fixtures that start the whole system as processes, wherever the test lives.
E2E_FIXTURES = {"embedded"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.relative_to(config.rootpath).as_posix()
        for prefix, tier in TIER_BY_PATH.items():
            if path.startswith(prefix):
                item.add_marker(tier)
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("e2e")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every skipped test under one heading, grouped by reason: a tier that did not run
    says so, and why. Then how many tests the selection left out."""
    by_reason = _skipped_by_reason(terminalreporter.stats.get("skipped", []))
    deselected = len(terminalreporter.stats.get("deselected", []))
    if not by_reason and not deselected:
        return
    terminalreporter.section("not run", sep="=", yellow=True, bold=True)
    for reason, nodeids in sorted(by_reason.items(), key=lambda pair: -len(pair[1])):
        terminalreporter.line(f"{len(nodeids)} skipped: {reason}", yellow=True, bold=True)
        for nodeid in nodeids:
            terminalreporter.line(f"    {nodeid}")
    if deselected:
        option = terminalreporter.config.option
        flags = (("m", option.markexpr), ("k", option.keyword))
        chosen = " ".join(f"-{flag} {expr!r}" for flag, expr in flags if expr) or "--deselect"
        terminalreporter.line(f"{deselected} deselected by {chosen}", yellow=True)


def _skipped_by_reason(reports: list[pytest.TestReport]) -> dict[str, list[str]]:
    by_reason: dict[str, list[str]] = {}
    for report in reports:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        by_reason.setdefault(reason.removeprefix("Skipped: "), []).append(report.nodeid)
    return by_reason


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
        # Short, for the lockout test to wait it out; longer than the 1.6 s that the
        # failure which locks the account sleeps, with room for a loaded machine.
        login_lockout=timedelta(seconds=5),
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
