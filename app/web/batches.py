"""Batch pages: the "Run on many" form, the batches list, and a batch's page (its items
with their status and runs, live over ``/ws/events``, with Cancel)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.batches import BatchOperate, BatchView, detail
from app.api.deps import (
    CatalogDep,
    PageUser,
    RedisDep,
    SecretBoxDep,
    SessionDep,
    SignedIn,
    client_ip,
)
from app.catalog.registry import Catalog
from app.dispatch import batches as batch_service
from app.entities.batch import repository as batches
from app.entities.batch.models import BatchStatus
from app.entities.batch.schemas import BatchCreate
from app.entities.entity import repository as entities
from app.entities.team.models import Role
from app.errors import InvalidInput, NotFound
from app.security.principal import Principal
from app.web._paging import PAGE_SIZE, PageNumber, offset, pager
from app.web._render import CheckedForm, PageRoute, is_htmx, redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

CHOICES = 500


@router.get("/batches", name="batches_page")
async def batches_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    status: Annotated[BatchStatus | None, Query()] = None,
    page: PageNumber = 1,
) -> Response:
    rows, total = await batches.page(
        session, principal.visible_teams, None, status, PAGE_SIZE, offset(page)
    )
    context = {
        "batches": rows,
        "status": status,
        "statuses": list(BatchStatus),
        **pager(page, total),
    }
    return render(request, "batches/list.html", context)


@router.get("/batches/new", name="batch_new")
async def batch_new(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    kind: str,
    role: str | None = None,
    target: uuid.UUID | None = None,
) -> Response:
    context = await _form_context(session, principal, catalog, kind, role, target)
    return render(request, "batches/new.html", context)


@router.post("/batches/new", name="batch_create")
async def batch_create(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    redis: RedisDep,
    box: SecretBoxDep,
    posted: CheckedForm,
) -> Response:
    form = {key: posted.get(key) for key in posted}
    kind, role = str(form.get("kind", "")), str(form.get("role") or "") or None
    target = uuid.UUID(str(form["target"])) if form.get("target") else None
    try:
        body = _parsed(form, posted.getlist("ids"))
        selection = batch_service.Selection(
            ids=body.ids, role=body.filter.role if body.filter else None,
            target=body.filter.target if body.filter else None,
        )  # fmt: skip
        batch = await batch_service.start(
            session, batch_service.Services(catalog, redis, box), principal, kind=body.kind,
            operation=body.operation, selection=selection, values=body.values,
            concurrency=body.concurrency, max_failures=body.max_failures,
            ip=client_ip(request),
        )  # fmt: skip
    except InvalidInput as error:
        context = await _form_context(session, principal, catalog, kind, role, target)
        return render(request, "batches/new.html", {**context, "errors": error.errors,
                                                    "form": form}, 422)  # fmt: skip
    return redirect(request, str(request.url_for("batch_page", batch_id=batch.id)))


def _parsed(form: dict[str, Any], ids: list[Any]) -> BatchCreate:
    """The posted form as the API's body; 422 naming the field when it is not one."""
    try:
        values = json.loads(str(form.get("values") or "{}"))
    except json.JSONDecodeError as error:
        raise InvalidInput.field(["body", "values"], f"not JSON: {error}") from None
    body: dict[str, Any] = {
        "kind": form.get("kind"),
        "operation": form.get("operation"),
        "values": values,
        "concurrency": form.get("concurrency") or 2,
        "max_failures": form.get("max_failures") or None,
    }
    if form.get("role"):
        body["filter"] = {"role": form["role"], "target": form.get("target")}
    else:
        body["ids"] = [str(i) for i in ids]
    try:
        return BatchCreate.model_validate(body, strict=False)  # form text
    except ValidationError as error:
        raise InvalidInput.from_validation(error, ["body"]) from None


async def _form_context(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    kind_name: str,
    role: str | None,
    target: uuid.UUID | None,
) -> dict[str, Any]:
    kind = catalog.kinds.get(kind_name)
    if kind is None:
        raise NotFound(f"there is no entity kind {kind_name}")
    target_entity = None
    if role is not None and target is not None:
        target_entity = await entities.get(session, target)
        principal.require(target_entity.team_id, Role.operator, f"entity with id {target}")
    teams = {t for t in principal.roles if principal.can(t, Role.operator)}
    choices, _ = await entities.page(
        session, kind.name, None, CHOICES, 0, None if principal.is_admin else teams
    )
    return {
        "kind": kind,
        "operations": list(kind.operations.values()),
        "choices": choices,
        "role": role,
        "target": target_entity,
        "errors": [],
        "form": {},
    }


@router.get("/batches/{batch_id}", name="batch_page")
async def batch_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    batch: BatchView,
) -> Response:
    kind = catalog.kinds.get(batch.kind)
    op_type = kind.operations.get(batch.operation) if kind else None
    context = {
        "batch": await detail(session, batch),
        "op_label": op_type.label if op_type else batch.operation,
        "kind": kind,
        "can_cancel": principal.can(batch.team_id, Role.operator),
    }
    fragment = is_htmx(request) and request.headers.get("hx-target") == "batch-live"
    return render(request, "batches/_live.html" if fragment else "batches/show.html", context)


@router.post("/batches/{batch_id}/cancel", name="batch_cancel")
async def batch_cancel(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    redis: RedisDep,
    box: SecretBoxDep,
    posted: CheckedForm,
    batch: BatchOperate,
) -> Response:
    services = batch_service.Services(catalog, redis, box)
    batch = await batch_service.cancel(session, services, principal, batch, client_ip(request))
    return redirect(request, str(request.url_for("batch_page", batch_id=batch.id)))
