"""Sign-in, sign-out, tokens, the audit log, and the API documentation (signed-in only)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Authenticated, PrincipalDep, SessionDep, SettingsDep, client_ip
from app.db import utcnow
from app.dispatch import accounts
from app.dispatch.audit import record
from app.entities.audit import repository as audit
from app.entities.token import repository as tokens
from app.entities.token.schemas import TokenCreate
from app.errors import Forbidden
from app.security.auth import authenticate, check_csrf, csrf_token
from app.security.principal import Principal
from app.web._render import render

router = APIRouter(include_in_schema=False)

AUDIT_PAGE = 500  # the newest events, on one page


@router.get("/login", name="login_form")
async def login_form(request: Request) -> Response:
    return _form(request, "", None, 200)


def _form(request: Request, username: str, error: str | None, status_code: int) -> Response:
    context = {"username": username, "error": error}
    return render(request, "login.html", context, status_code)


@router.post("/login", name="login_submit")
async def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=512)],
    csrf: Annotated[str, Form(alias="csrf_token", max_length=100)] = "",
) -> Response:
    try:
        check_csrf(request.session, csrf)
    except Forbidden as error:
        return _form(request, username, error.message, 403)
    outcome = await accounts.sign_in(session, settings, username, password, client_ip(request))
    if isinstance(outcome, accounts.SignInRefused):
        # The failure is counted and recorded now, not after the wait: the wait must
        # not hold the database's write lock.
        await session.commit()
        await asyncio.sleep(outcome.wait)
        return _form(request, username, outcome.message, outcome.status_code)
    request.session.clear()
    request.session["uid"] = str(outcome.id)
    csrf_token(request.session)  # a fresh one for the signed-in session
    return RedirectResponse(request.url_for("home"), status_code=303)


@router.post("/logout", name="logout")
async def logout(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form(alias="csrf_token", max_length=100)] = "",
) -> Response:
    check_csrf(request.session, csrf or request.headers.get("x-csrf-token"))
    principal = await authenticate(session, None, request.session)
    if principal is not None:
        record(session, principal, "logout", target_kind="user", target_id=principal.user_id)
    request.session.clear()
    return RedirectResponse(request.url_for("login_form"), status_code=303)


async def _signed_in(request: Request, session: AsyncSession) -> Principal | Response:
    principal = await authenticate(session, None, request.session)
    if principal is None:
        return RedirectResponse(request.url_for("login_form"), status_code=303)
    request.state.principal = principal  # the layout shows who is signed in
    return principal


@router.get("/tokens", name="tokens_page")
async def tokens_page(request: Request, session: SessionDep) -> Response:
    principal = await _signed_in(request, session)
    if isinstance(principal, Response):
        return principal
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
    # Optional here, checked below: an anonymous request is sent to sign in, not told why.
    name: Annotated[str, Form(max_length=1000)] = "",
    days: Annotated[str, Form(max_length=10)] = "90",
    csrf: Annotated[str, Form(alias="csrf_token", max_length=100)] = "",
) -> Response:
    principal = await _signed_in(request, session)
    if isinstance(principal, Response):
        return principal
    check_csrf(request.session, csrf)
    try:
        body = TokenCreate.model_validate({"name": name, "expires_in_days": days})
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
    token_id: uuid.UUID,
    csrf: Annotated[str, Form(alias="csrf_token", max_length=100)] = "",
) -> Response:
    principal = await _signed_in(request, session)
    if isinstance(principal, Response):
        return principal
    check_csrf(request.session, csrf)
    await accounts.revoke_token(session, principal, token_id)
    return RedirectResponse(request.url_for("tokens_page"), status_code=303)


@router.get("/audit", name="audit_page")
async def audit_page(request: Request, session: SessionDep) -> Response:
    principal = await _signed_in(request, session)
    if isinstance(principal, Response):
        return principal
    principal.require_admin()
    events = await audit.newest(session, AUDIT_PAGE)
    return render(request, "audit.html", {"events": events})


@router.get("/openapi.json", name="openapi_document", dependencies=[Authenticated])
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", name="swagger_ui", dependencies=[Authenticated])
async def swagger_ui(request: Request, principal: PrincipalDep) -> HTMLResponse:
    # Served from our own static files (swagger-ui-bundle-v2), never from a CDN.
    return get_swagger_ui_html(
        openapi_url=str(request.url_for("openapi_document")),
        title="Aegir API",
        swagger_js_url=str(request.url_for("swagger", path="swagger-ui-bundle.js")),
        swagger_css_url=str(request.url_for("swagger", path="swagger-ui.css")),
        swagger_favicon_url=str(request.url_for("swagger", path="favicon-32x32.png")),
    )
