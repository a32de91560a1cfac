"""What every dashboard page shares: templates, CSRF, errors as pages."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from starlette.applications import Starlette
from starlette.datastructures import URL, FormData, URLPath

from app.api.deps import PageUser, SignInRequired
from app.config import PROJECT_ROOT
from app.db import utcnow
from app.entities.run.states import FINAL
from app.entities.team.models import Role
from app.errors import AegirError
from app.security.auth import CSRF_FIELD, CSRF_HEADER, check_csrf, csrf_token
from app.security.principal import Principal
from app.state import app_state
from app.web.forms import humanise

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
templates.env.filters["words"] = humanise  # a field's name as people write it ("SSH user")


class _Paths:
    """Each route's path worked out once per route name and parameter names.

    Starlette's ``url_for`` tries every route in turn until one answers to the name,
    about 0.3 ms a call here, and a list page makes a few hundred calls (three links
    a row). The path's shape depends only on the route, so it is found once with
    markers for the parameters, which each call then replaces.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.shapes: dict[tuple[str, tuple[str, ...]], URLPath | None] = {}

    def path(self, name: str, params: dict[str, Any]) -> URLPath:
        key = (name, tuple(sorted(params)))
        if key not in self.shapes:
            self.shapes[key] = self._shape(name, key[1])
        shape = self.shapes[key]
        if shape is None:  # a parameter that a marker cannot stand for (an int)
            return self.app.url_path_for(name, **params)
        path = str(shape)
        for param in key[1]:
            path = path.replace(_marker(param), str(params[param]))
        return URLPath(path, protocol=shape.protocol, host=shape.host)

    def _shape(self, name: str, params: tuple[str, ...]) -> URLPath | None:
        try:
            return self.app.url_path_for(name, **{param: _marker(param) for param in params})
        except (ValueError, TypeError, AssertionError):
            return None


def _marker(param: str) -> str:
    return f"\x00{param}\x00"


_paths: weakref.WeakKeyDictionary[Starlette, _Paths] = weakref.WeakKeyDictionary()


@pass_context
def _url_for(context: Mapping[str, Any], name: str, /, **params: Any) -> URL:
    """What Starlette's ``url_for`` answers, without searching the routes every call."""
    request: Request = context["request"]
    paths = _paths.get(request.app) or _paths.setdefault(request.app, _Paths(request.app))
    return paths.path(name, params).make_absolute_url(request.base_url)


templates.env.globals["url_for"] = _url_for


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
