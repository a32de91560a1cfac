"""Sign-in, sign-out, and the API documentation (signed-in only)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from app.api.deps import Authenticated, PrincipalDep, SessionDep, SettingsDep, client_ip
from app.config import PROJECT_ROOT
from app.dispatch import accounts
from app.dispatch.audit import record
from app.errors import Forbidden
from app.security.auth import authenticate, check_csrf, csrf_token
from app.web._render import render

router = APIRouter(include_in_schema=False)


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


@router.get("/favicon.ico", name="favicon")
async def favicon() -> FileResponse:
    """Browsers ask for it at the root, signed in or not."""
    return FileResponse(PROJECT_ROOT / "static" / "favicon.ico", media_type="image/x-icon")
