"""Notification targets of a team (webhooks, e-mail), their tests and delivery logs.

Viewers of a team see its targets and deliveries; operators may send a test; creating,
changing and deleting a target needs the team's admin role (as its entities do). A
target of a team the one asking is not in is 404. Secrets are never in an answer.
"""

# No ``from __future__ import annotations``: FastAPI reads the closures' annotations.

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.access import Asking
from app.api.deps import (
    Authenticated,
    Limit,
    Offset,
    PrincipalDep,
    SecretBoxDep,
    SessionDep,
    StateDep,
)
from app.db import commit_and_yield
from app.dispatch import notifications as notify
from app.entities.notification import repository as notifications
from app.entities.notification.models import NotificationTarget
from app.entities.notification.schemas import DeliveryRead, TargetCreate, TargetRead, TargetUpdate
from app.entities.team.models import Role
from app.schemas import Page

router = APIRouter(
    prefix="/api/v1/notification-targets", tags=["notifications"], dependencies=[Authenticated]
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such target"}}


def target_access(role: Role) -> Any:
    """The target of the path's ``target_id``, on whose team the one asking holds ``role``
    (not in its team: 404). Shared with the dashboard's pages."""

    async def target(
        session: SessionDep, principal: Asking, target_id: uuid.UUID
    ) -> NotificationTarget:
        found = await notifications.get_target(session, target_id)
        principal.require(found.team_id, role, f"notification target with id {target_id}")
        return found

    return Depends(target)


TargetView = Annotated[NotificationTarget, target_access(Role.viewer)]
TargetTest = Annotated[NotificationTarget, target_access(Role.operator)]
TargetAdmin = Annotated[NotificationTarget, target_access(Role.admin)]


@router.get("", response_model=Page[TargetRead], summary="Notification targets I can see")
async def list_targets(
    session: SessionDep,
    principal: PrincipalDep,
    team: Annotated[uuid.UUID | None, Query(description="Only this team's.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TargetRead]:
    rows, total = await notifications.targets_page(
        session, principal.visible_teams, team, limit, offset
    )
    items = [TargetRead.model_validate(row) for row in rows]
    return Page[TargetRead](items=items, total=total, limit=limit, offset=offset)


@router.post(
    "",
    response_model=TargetRead,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No team of that id that you administer"}},
    summary="Add a webhook or e-mail target (the team's admins)",
)
async def create_target(
    session: SessionDep, principal: PrincipalDep, box: SecretBoxDep, body: TargetCreate
) -> TargetRead:
    target = await notify.create_target(session, principal, box, body)
    return TargetRead.model_validate(target)


@router.get("/{target_id}", response_model=TargetRead, responses=NOT_FOUND, summary="A target")
async def get_target(target: TargetView) -> TargetRead:
    return TargetRead.model_validate(target)


@router.patch(
    "/{target_id}",
    response_model=TargetRead,
    responses=NOT_FOUND,
    summary="Change a target (the team's admins); a secret sent replaces the old one",
)
async def change_target(
    session: SessionDep,
    principal: PrincipalDep,
    box: SecretBoxDep,
    target: TargetAdmin,
    body: TargetUpdate,
) -> TargetRead:
    target = await notify.change_target(session, principal, box, target, body)
    return TargetRead.model_validate(target)


@router.delete(
    "/{target_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    summary="Delete a target and its delivery log (the team's admins)",
)
async def delete_target(
    session: SessionDep, principal: PrincipalDep, target: TargetAdmin
) -> Response:
    await notify.remove_target(session, principal, target)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{target_id}/test",
    response_model=DeliveryRead,
    responses=NOT_FOUND,
    summary="Send a test delivery now (the team's operators); its outcome, as logged",
)
async def test_target(session: SessionDep, state: StateDep, target: TargetTest) -> DeliveryRead:
    await commit_and_yield(session)  # hold nothing while the receiver answers
    delivery = await notify.send_test(state.sessionmaker, state.settings, state.secret_box, target)
    return DeliveryRead.model_validate(delivery)


@router.get(
    "/{target_id}/deliveries",
    response_model=Page[DeliveryRead],
    responses=NOT_FOUND,
    summary="A target's delivery log, newest first",
)
async def list_deliveries(
    session: SessionDep, target: TargetView, limit: Limit = 50, offset: Offset = 0
) -> Page[DeliveryRead]:
    rows, total = await notifications.deliveries_page(session, target.id, limit, offset)
    items = [DeliveryRead.model_validate(row) for row in rows]
    return Page[DeliveryRead](items=items, total=total, limit=limit, offset=offset)
