"""The home page: what is running, what failed, and on a fresh install what to do first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import CatalogDep, PageUser, SessionDep, SignedIn
from app.entities.entity import repository as entities
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.states import RunStatus
from app.web._render import PageRoute, is_htmx, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

FIRST_STEPS = ("server", "platform", "site")


@router.get("/", name="home")
async def home(
    request: Request, session: SessionDep, principal: PageUser, catalog: CatalogDep
) -> Response:
    teams = principal.visible_teams
    counts = {}
    for kind in catalog.kinds.values():
        _rows, counts[kind.name] = await entities.page(session, kind.name, None, 1, 0, teams)
    active: list[Run] = []
    for status in (RunStatus.running, RunStatus.cancelling, RunStatus.queued):
        found, _ = await runs.newest_page(
            session, entity_id=None, operation_id=None, status=status, limit=20, offset=0,
            teams=teams,
        )  # fmt: skip
        active += found
    failed, _ = await runs.newest_page(
        session, entity_id=None, operation_id=None, status=RunStatus.failed, limit=10, offset=0,
        teams=teams,
    )  # fmt: skip
    named = await entities.get_many(session, list({run.entity_id for run in active + failed}))
    steps = [catalog.kinds[name] for name in FIRST_STEPS if name in catalog.kinds]
    context = {
        "counts": counts,
        "steps": steps,
        "next_step": next((kind for kind in steps if not counts[kind.name]), None),
        "active": active,
        "failed": failed,
        "named": named,
        "plural": {kind.name: kind.plural for kind in catalog.kinds.values()},
    }
    fragment = is_htmx(request) and request.headers.get("hx-target") == "home-live"
    return render(request, "_home_live.html" if fragment else "home.html", context)
