"""The signed-in user's API tokens, and the audit log (site admins)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.access import SiteAdmin
from app.api.deps import PageUser, SessionDep, SignedIn
from app.db import utcnow
from app.dispatch import accounts
from app.entities.audit import repository as audit
from app.entities.token import repository as tokens
from app.entities.token.schemas import TokenCreate
from app.security.principal import Principal
from app.web._render import CheckedForm, PageRoute, redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

AUDIT_PAGE = 500  # the newest events, on one page


@router.get("/tokens", name="tokens_page")
async def tokens_page(request: Request, session: SessionDep, principal: PageUser) -> Response:
    return await _tokens(request, session, principal, None, None, 200)


async def _tokens(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    created: str | None,
    error: str | None,
    status_code: int,
) -> Response:
    rows = await tokens.of_user(session, principal.user_id)
    context = {"tokens": rows, "created": created, "error": error, "now": utcnow()}
    return render(request, "tokens.html", context, status_code)


@router.post("/tokens", name="tokens_create")
async def tokens_create(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    posted: CheckedForm,
    # Checked below, so that a bad value is said on the page, beside the form.
    name: Annotated[str, Form(max_length=1000)] = "",
    days: Annotated[str, Form(max_length=10)] = "90",
) -> Response:
    try:
        body = TokenCreate.model_validate(
            {"name": name, "expires_in_days": days},
            strict=False,  # form text
        )
    except ValidationError as error:
        message = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
        return await _tokens(request, session, principal, None, message, 422)
    _row, token = await accounts.create_own_token(
        session, principal, body.name, body.expires_in_days
    )
    return await _tokens(request, session, principal, token, None, 201)


@router.post("/tokens/{token_id}/revoke", name="tokens_revoke")
async def tokens_revoke(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    posted: CheckedForm,
    token_id: uuid.UUID,
) -> Response:
    await accounts.revoke_token(session, principal, token_id)
    return redirect(request, str(request.url_for("tokens_page")))


@router.get("/audit", name="audit_page")
async def audit_page(request: Request, session: SessionDep, admin: SiteAdmin) -> Response:
    events = await audit.newest(session, AUDIT_PAGE)
    return render(request, "audit.html", {"events": events})
