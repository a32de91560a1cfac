"""Notifications: which targets hear of a run's end, what they are sent, how it is signed
and sent, and the targets' changes (API and dashboard).

The relay's notifier (relay/notifier.py) calls ``deliver`` off every run's path; the
API's "send test" calls it within the request. Queries live in the repository.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import session_scope, utcnow
from app.dispatch.audit import record
from app.entities.notification import repository as notifications
from app.entities.notification.models import (
    DeliveryState,
    NotificationDelivery,
    NotificationTarget,
    TargetKind,
)
from app.entities.notification.repository import EndedRun
from app.entities.notification.schemas import TargetCreate, TargetUpdate
from app.entities.team import repository as teams
from app.entities.team.models import Role
from app.errors import InvalidInput, NotFound
from app.security.crypto import SecretBox
from app.security.principal import Principal

TEST_EVENT = "test"
USER_AGENT = "Aegir-Notifier/1"


def event_of(status: str) -> str:
    return f"run.{status}"


def matches(target: NotificationTarget, run: EndedRun) -> bool:
    """Whether the target's filters let this run's end through (empty: everything).
    Runs that ended before the target existed are not its business (the look-back
    reads them again)."""
    return (
        target.team_id == run.team_id
        and run.finished_at >= target.created_at
        and (not target.entity_kinds or run.entity_kind in target.entity_kinds)
        and (not target.operations or run.operation_type in target.operations)
        and (not target.statuses or run.status in target.statuses)
    )


def payload(run: EndedRun, base_url: str) -> dict[str, Any]:
    """The JSON body a webhook gets (and an e-mail is written from)."""

    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "event": event_of(run.status),
        "run": {
            "id": str(run.id), "status": run.status, "operation": run.operation_type,
            "exit_code": run.exit_code, "error": run.error, "requested_by": run.requested_by,
            "created_at": when(run.created_at), "started_at": when(run.started_at),
            "finished_at": when(run.finished_at),
            "url": f"{base_url}/runs/{run.id}", "api_url": f"{base_url}/api/v1/runs/{run.id}",
        },
        "entity": {"id": str(run.entity_id), "kind": run.entity_kind, "name": run.entity_name},
        "team": {"id": str(run.team_id), "name": run.team_name},
    }  # fmt: skip


def test_payload(target: NotificationTarget, base_url: str) -> dict[str, Any]:
    return {
        "event": TEST_EVENT,
        "message": f"A test from Aegir for the notification target {target.name!r}.",
        "target": {"id": str(target.id), "name": target.name},
        "team": {"id": str(target.team_id)},
        "url": f"{base_url}/notifications",
    }


def deliveries_for(
    runs: list[EndedRun], targets: list[NotificationTarget], base_url: str
) -> list[dict[str, Any]]:
    """The delivery rows for these ended runs: one per (matching target, run)."""
    return [
        {
            "id": uuid.uuid4(),
            "target_id": target.id,
            "run_id": run.id,
            "event": event_of(run.status),
            "payload": payload(run, base_url),
            "state": DeliveryState.pending,
            "attempts": 0,
            "next_attempt_at": utcnow(),
            "tries": [],
            "created_at": utcnow(),
        }
        for run in runs
        for target in targets
        if matches(target, run)
    ]


# Signing and sending.


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``X-Aegir-Signature``: ``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    code: int | None = None
    error: str | None = None

    def as_try(self, at: datetime) -> dict[str, Any]:
        return {"at": at.isoformat(), "code": self.code, "error": self.error}


async def deliver(
    settings: Settings,
    box: SecretBox,
    client: httpx.AsyncClient,
    target: NotificationTarget,
    delivery: NotificationDelivery,
) -> Outcome:
    """One attempt, within ``notify_timeout``; never raises."""
    timeout = settings.notify_timeout.total_seconds()
    try:
        async with asyncio.timeout(timeout):
            if target.kind == TargetKind.webhook:
                return await _post(client, box, target, delivery, timeout)
            return await _mail(settings, target, delivery.payload, timeout)
    except TimeoutError:
        return Outcome(False, error=f"no answer within {timeout:g} s")
    except Exception as error:  # a receiver's failure is recorded, never raised
        return Outcome(False, error=f"{type(error).__name__}: {error}"[:500])


async def _post(
    client: httpx.AsyncClient,
    box: SecretBox,
    target: NotificationTarget,
    delivery: NotificationDelivery,
    seconds: float,
) -> Outcome:
    body = orjson.dumps(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Aegir-Event": delivery.event,
        "X-Aegir-Delivery": str(delivery.id),
        "X-Aegir-Signature": signature(box.open(target.secret), int(time.time()), body),
    }
    assert target.url is not None
    response = await client.post(target.url, content=body, headers=headers, timeout=seconds)
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    return Outcome(False, response.status_code, f"answered {response.status_code}")


async def _mail(
    settings: Settings, target: NotificationTarget, body: dict[str, Any], seconds: float
) -> Outcome:
    if not settings.smtp_host:
        return Outcome(False, error="no SMTP server is set (AEGIR_SMTP_HOST)")
    message = email_message(settings.smtp_from, target.addresses, body)
    # smtplib blocks: in a thread, its sockets bounded by the same timeout.
    await asyncio.to_thread(_smtp_send, settings, message, seconds)
    return Outcome(True)


def _smtp_send(settings: Settings, message: EmailMessage, timeout: float) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


def email_message(sender: str, addresses: list[str], body: dict[str, Any]) -> EmailMessage:
    """A plain-text e-mail: "[Aegir] site example.com: install failed" and the link."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(addresses)
    if body["event"] == TEST_EVENT:
        message["Subject"] = f"[Aegir] test of {body['target']['name']}"
        message.set_content(f"{body['message']}\n\n{body['url']}\n")
        return message
    run, entity = body["run"], body["entity"]
    message["Subject"] = (
        f"[Aegir] {entity['kind']} {entity['name']}: {run['operation']} {run['status']}"
    )
    lines = [
        f"The {run['operation']} of {entity['kind']} {entity['name']} "
        f"(team {body['team']['name']}) ended: {run['status']}.",
        "",
        f"Exit code: {run['exit_code']}",
        f"Started:   {run['started_at'] or 'never'}",
        f"Finished:  {run['finished_at']}",
    ]
    if run["error"]:
        lines.append(f"Why:       {run['error']}")
    lines += ["", f"The run and its log: {run['url']}", ""]
    message.set_content("\n".join(lines))
    return message


def after_attempt(
    settings: Settings, outcome: Outcome, attempts_before: int, now: datetime
) -> tuple[DeliveryState, datetime | None]:
    """The delivery's state after this attempt, and when the next one is due."""
    if outcome.ok:
        return DeliveryState.delivered, None
    made = attempts_before + 1
    if made >= settings.notify_attempts:
        return DeliveryState.failed, None
    delay = settings.notify_backoff.total_seconds() * 2 ** (made - 1)
    return DeliveryState.pending, now + timedelta(seconds=delay)


# Targets: the API's and dashboard's changes. Managing a target needs the team's admin
# role, as creating or changing its entities does: a target sends what happens in the
# team to an address outside it. A test needs the operator role; viewers see them.


async def create_target(
    session: AsyncSession, principal: Principal, box: SecretBox, body: TargetCreate
) -> NotificationTarget:
    if (
        not principal.can(body.team_id, Role.admin)
        or await teams.get(session, body.team_id) is None
    ):
        raise NotFound(f"team_id: no team {body.team_id} that you administer")
    target = NotificationTarget(
        team_id=body.team_id, name=body.name, kind=body.kind,
        url=str(body.url) if body.url else None,
        secret=box.seal(body.secret.get_secret_value()) if body.secret else None,
        addresses=list(body.addresses), entity_kinds=list(body.entity_kinds),
        operations=list(body.operations), statuses=[str(s) for s in body.statuses],
        enabled=body.enabled,
    )  # fmt: skip
    await notifications.add_target(session, target)
    record(session, principal, "notification_target.created", target_kind="notification_target",
           target_id=target.id, team_id=target.team_id, name=target.name)  # fmt: skip
    return target


async def change_target(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    target: NotificationTarget,
    body: TargetUpdate,
) -> NotificationTarget:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, mode="json")
    if body.secret is not None:
        changes["secret"] = box.seal(body.secret.get_secret_value())
    for name, value in changes.items():
        setattr(target, name, value)
    _check_complete(target)
    await session.flush()
    fields = ",".join(sorted(changes))
    record(session, principal, "notification_target.changed", target_kind="notification_target",
           target_id=target.id, team_id=target.team_id, fields=fields)  # fmt: skip
    return target


def _check_complete(target: NotificationTarget) -> None:
    if target.kind == TargetKind.webhook and not (target.url and target.secret):
        raise InvalidInput.field(["body", "url"], "a webhook needs a url and a secret")
    if target.kind == TargetKind.email and not target.addresses:
        raise InvalidInput.field(["body", "addresses"], "an e-mail target needs an address")


async def remove_target(
    session: AsyncSession, principal: Principal, target: NotificationTarget
) -> None:
    await notifications.remove_target(session, target.id)
    record(session, principal, "notification_target.deleted", target_kind="notification_target",
           target_id=target.id, team_id=target.team_id, name=target.name)  # fmt: skip


async def send_test(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    box: SecretBox,
    target: NotificationTarget,
) -> NotificationDelivery:
    """Send a test now (one attempt, no retry), and record it in the delivery log.

    The caller holds no transaction meanwhile (on SQLite, no write lock held over the
    network): the outcome is recorded in a session of its own."""
    delivery = NotificationDelivery(
        id=uuid.uuid4(), target_id=target.id, run_id=None, event=TEST_EVENT,
        payload=test_payload(target, settings.base_url), state=DeliveryState.pending,
        attempts=0, tries=[], next_attempt_at=None, created_at=utcnow(),
    )  # fmt: skip
    async with httpx.AsyncClient(follow_redirects=False) as client:
        outcome = await deliver(settings, box, client, target, delivery)
    now = utcnow()
    delivery.state = DeliveryState.delivered if outcome.ok else DeliveryState.failed
    delivery.attempts, delivery.tries, delivery.finished_at = 1, [outcome.as_try(now)], now
    async with session_scope(sessionmaker) as session:
        await notifications.add_delivery(session, delivery)
    return delivery
