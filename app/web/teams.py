"""Teams and their members, for site admins: list, create, add, change a role, remove."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.access import SiteAdmin
from app.api.deps import SessionDep, SignedIn
from app.dispatch import accounts, views
from app.entities.team.models import Role
from app.entities.team.schemas import TeamCreate
from app.entities.user import repository as users
from app.errors import Conflict, NotFound
from app.security.principal import Principal
from app.web._render import CheckedForm, PageRoute, redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

ROLES = [role.value for role in Role]


@router.get("/teams", name="teams_page")
async def teams_page(request: Request, session: SessionDep, admin: SiteAdmin) -> Response:
    return await _teams(request, session, admin, "", None, 200)


async def _teams(
    request: Request,
    session: AsyncSession,
    admin: Principal,
    typed: str,
    error: str | None,
    status_code: int,
) -> Response:
    context = {"teams": await views.team_list(session, admin), "typed": typed, "error": error}
    return render(request, "teams/list.html", context, status_code)


@router.post("/teams", name="teams_create")
async def teams_create(
    request: Request,
    session: SessionDep,
    admin: SiteAdmin,
    posted: CheckedForm,
    # Checked below, so that a bad name is said on the page, beside the form.
    name: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    try:
        body = TeamCreate.model_validate({"name": name.strip()})
        team = await accounts.create_team(session, admin, body.name)
    except ValidationError:
        message = "A team name is lower-case letters, digits, '-' and '_', such as acme-web."
        return await _teams(request, session, admin, name, message, 422)
    except Conflict as error:
        await session.rollback()
        return await _teams(request, session, admin, name, error.message, 409)
    return redirect(request, str(request.url_for("team_page", team_id=team.id)))


@router.get("/teams/{team_id}", name="team_page")
async def team_page(
    request: Request, session: SessionDep, admin: SiteAdmin, team_id: uuid.UUID
) -> Response:
    return await _team(request, session, admin, team_id, None, 200)


async def _team(
    request: Request,
    session: AsyncSession,
    admin: Principal,
    team_id: uuid.UUID,
    error: str | None,
    status_code: int,
) -> Response:
    team = next((t for t in await views.team_list(session, admin) if t.id == team_id), None)
    if team is None:
        raise NotFound(f"no team with id {team_id}")
    members = {member.user_id for member in team.members}
    others = [user for user in await users.every(session) if user.id not in members]
    context = {"team": team, "others": others, "roles": ROLES, "error": error}
    return render(request, "teams/show.html", context, status_code)


@router.post("/teams/{team_id}/members", name="team_member_set")
async def team_member_set(
    request: Request,
    session: SessionDep,
    admin: SiteAdmin,
    posted: CheckedForm,
    team_id: uuid.UUID,
    user_id: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Add a member, or change a member's role."""
    try:
        user, wanted = uuid.UUID(user_id), Role(role)
    except ValueError:
        message = "Choose a user and a role (viewer, operator or admin)."
        return await _team(request, session, admin, team_id, message, 422)
    await accounts.set_member(session, admin, team_id, user, wanted)
    return redirect(request, str(request.url_for("team_page", team_id=team_id)))


@router.post("/teams/{team_id}/members/{user_id}/remove", name="team_member_remove")
async def team_member_remove(
    request: Request,
    session: SessionDep,
    admin: SiteAdmin,
    posted: CheckedForm,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
) -> Response:
    await accounts.remove_member(session, admin, team_id, user_id)
    return redirect(request, str(request.url_for("team_page", team_id=team_id)))
