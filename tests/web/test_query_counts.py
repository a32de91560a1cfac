"""The pages and API lists a fleet reads most run a fixed number of SQL statements,
however many sites, runs and log lines there are (no N+1: issue 14, scale)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.entities.run import repository as runs
from tests.fixtures.accounts import Account, signed_in
from tests.fixtures.factories import make_graph, make_site, operation_id

N = 5
LINES_PER_STEP = 40


@contextmanager
def counted(app: FastAPI) -> Iterator[list[str]]:
    """Every statement the app's engine sends to the database meanwhile."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


@dataclass
class Fleet:
    """One platform whose sites grow; one site whose runs grow; one run whose log grows."""

    graph: dict[str, dict[str, Any]]
    sites: int = 1
    runs: list[str] = field(default_factory=list)
    lines: int = 0

    @property
    def site(self) -> dict[str, Any]:
        return self.graph["site"]

    async def grow(self, client: httpx.AsyncClient, session: AsyncSession, size: int) -> None:
        """``size`` sites on the platform, ``size`` runs of the site, ``size`` log steps."""
        platform, server = self.graph["platform"], self.graph["server"]
        for i in range(self.sites, size):
            await make_site(client, platform, server, f"s{i}.example.com")
        self.sites = max(self.sites, size)
        install = operation_id(self.site, "install")
        while len(self.runs) < size:
            answer = await client.post(f"/api/v1/operations/{install}/runs", json={})
            assert answer.status_code == 202, answer.text
            self.runs.append(answer.json()["id"])
        await self._log(session, size * LINES_PER_STEP)

    async def _log(self, session: AsyncSession, lines: int) -> None:
        run_id = uuid.UUID(self.runs[0])
        rows = [
            {
                "run_id": run_id,
                "seq": seq,
                "stream": "stdout",
                "line": f"line {seq}",
                "at": utcnow(),
            }
            for seq in range(self.lines + 1, lines + 1)
        ]
        await runs.insert_log_lines(session, rows)
        await session.commit()
        self.lines = max(self.lines, lines)


def _paths(fleet: Fleet) -> dict[str, str]:
    site, platform, run = fleet.site["id"], fleet.graph["platform"]["id"], fleet.runs[0]
    return {
        "sites page": "/sites",
        "sites page, filtered": "/sites?name=example",
        "sites API": "/api/v1/sites",
        "site page": f"/sites/{site}",
        "site API": f"/api/v1/sites/{site}",
        "run form": f"/operations/{operation_id(fleet.site, 'install')}/run",
        "platform page (used by every site)": f"/platforms/{platform}",
        "platforms page": "/platforms",
        "servers page (each used by every site)": "/servers",
        "platforms API": "/api/v1/platforms",
        "runs page": "/runs",
        "runs API": "/api/v1/runs",
        "site's runs API": f"/api/v1/runs?entity={site}",
        "run page": f"/runs/{run}",
        "run API": f"/api/v1/runs/{run}",
        "log API": f"/api/v1/runs/{run}/log?limit=10000",
    }


async def _statements(app: FastAPI, http: httpx.AsyncClient, path: str) -> list[str]:
    # Once before counting: what happens once (a token's last use noted) is not counted.
    assert (await http.get(path)).status_code == 200, path
    with counted(app) as statements:
        answer = await http.get(path)
    assert answer.status_code == 200, path
    return statements


async def _every_count(
    app: FastAPI, page: httpx.AsyncClient, api: httpx.AsyncClient, fleet: Fleet
) -> dict[str, list[str]]:
    found = {}
    for name, path in _paths(fleet).items():
        http = api if path.startswith("/api/") else page
        found[name] = await _statements(app, http, path)
    return found


async def test_the_busiest_pages_run_as_many_queries_for_3n_items_as_for_n(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, account: Account
) -> None:
    fleet = Fleet(await make_graph(client))
    async with signed_in(app, account.username) as page:
        await fleet.grow(client, session, N)
        small = await _every_count(app, page, client, fleet)
        await fleet.grow(client, session, 3 * N)
        large = await _every_count(app, page, client, fleet)
    grown = {
        name: (len(small[name]), len(large[name]), large[name])
        for name in small
        if len(large[name]) != len(small[name])
    }
    assert not grown, f"statements per request grew with the data: {grown}"
    assert all(statements for statements in large.values())


async def test_the_pages_show_what_was_counted(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, account: Account
) -> None:
    """The counted requests show the grown data (a count over an empty page proves nothing)."""
    fleet = Fleet(await make_graph(client))
    await fleet.grow(client, session, N)
    async with signed_in(app, account.username) as page:
        sites = (await page.get("/sites")).text
        site = (await page.get(f"/sites/{fleet.site['id']}")).text
        platform = (await page.get(f"/platforms/{fleet.graph['platform']['id']}")).text
        full_text = (await page.get(f"/runs/{fleet.runs[0]}/log.txt")).text
        platforms = (await page.get("/platforms")).text
    assert f"{N} sites" in sites and "s4.example.com" in sites
    assert site.count("<td>alice</td>") == N, "the site's run history shows its runs"
    assert "s4.example.com" in platform, "the platform says which sites use it"
    assert re.search(rf"<td>{N}</td>\s*</tr>", platforms), "the list says how many use it"
    expected = [f"line {seq}" for seq in range(1, N * LINES_PER_STEP + 1)]
    assert full_text.splitlines() == expected, "the full text has every line, in order"
    log = (await client.get(f"/api/v1/runs/{fleet.runs[0]}/log?limit=10000")).json()
    assert len(log["lines"]) == N * LINES_PER_STEP
    listed = (await client.get("/api/v1/runs")).json()
    assert listed["total"] == N
