"""What every dashboard page shares: templates, CSRF, errors as pages."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from app.api.deps import PageUser, SignInRequired
from app.config import PROJECT_ROOT
from app.db import utcnow
from app.entities.run.states import FINAL
from app.entities.team.models import Role
from app.errors import AegirError
from app.security.auth import CSRF_FIELD, CSRF_HEADER, check_csrf, csrf_token
from app.security.principal import Principal
from app.state import app_state

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))
templates.env.globals["FINAL_STATUSES"] = {str(status) for status in FINAL}
templates.env.globals["Role"] = Role


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _duration(run: Any) -> str:
    """From start to end, or to now while it runs."""
    started = run.started_at
    if started is None:
        return "not started"
    seconds = int(((run.finished_at or utcnow()) - started).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s"
    return text if minutes or hours else f"{seconds} s"


templates.env.filters["when"] = _when
templates.env.filters["duration"] = _duration


class PageRoute(APIRoute):
    """Expected failures become a page (or, for HTMX, a fragment) that says what went wrong."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return redirect(request, str(request.url_for("login_form")))
            except AegirError as error:
                return error_page(request, error.message, error.status_code)
            except RequestValidationError as error:
                # A mangled address: say which part, on a page, not in JSON.
                found = error.errors()
                where = [str(part) for part in found[0]["loc"]] if found else ["path"]
                status_code = 404 if where[0] == "path" else 422
                message = f"{where[-1]}: {found[0]['msg']}" if found else "a bad address"
                return error_page(request, message, status_code)

        return handle


def error_page(request: Request, message: str, status_code: int) -> Response:
    template = "_error.html" if is_htmx(request) else "error.html"
    context = {"message": message, "status_code": status_code}
    return render(request, template, context, status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def redirect(request: Request, url: str) -> Response:
    """A 303 for a plain browser; HTMX is told to navigate there (it may be off-site)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def render(
    request: Request, template: str, context: Mapping[str, Any], status_code: int = 200
) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    full = {
        "principal": principal if isinstance(principal, Principal) else None,
        "csrf": csrf_token(request.session),
        "kinds": list(app_state(request.app).catalog.kinds.values()),
        **context,
    }
    response: HTMLResponse = templates.TemplateResponse(
        request, template, full, status_code=status_code
    )
    return response


async def _checked_form(request: Request, principal: PageUser) -> FormData:
    """The posted form, once its CSRF token (field or HTMX header) is checked."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    check_csrf(request.session, sent if isinstance(sent, str) else request.headers.get(CSRF_HEADER))
    return form


CheckedForm = Annotated[FormData, Depends(_checked_form)]
