"""Actions: a task run within the request that asked, answered inside the click."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.types import ActionType, EntityKind
from app.db import commit_and_yield
from app.entities.task import repository as task_instances
from app.errors import AegirError, NotFound, Unavailable
from app.queue import QueueClient, action_reply, enqueue_action

REPLY_MARGIN = 1.0


class ActionTimeout(AegirError):
    status_code = 504


class ActionFailed(AegirError):
    status_code = 502


async def perform(
    session: AsyncSession,
    redis: QueueClient,
    kind: EntityKind,
    entity_id: uuid.UUID,
    action: ActionType,
) -> BaseModel:
    payload = await _payload(session, kind, entity_id, action)
    # The audit line is written: hold neither a transaction nor, on SQLite, this
    # process's turn to write while we wait (other requests would queue behind us).
    await commit_and_yield(session)
    seconds = action.timeout.total_seconds()
    try:
        job_id = await enqueue_action(redis, payload, expires=seconds)
        # A little longer than the command may take, so that a command stopped at its
        # timeout is reported as such rather than as silence.
        reply = await action_reply(redis, job_id, wait=seconds + REPLY_MARGIN)
    except (RedisError, OSError) as error:
        raise Unavailable(f"the queue is unavailable ({type(error).__name__}); try again") from None
    if reply is None:
        raise ActionTimeout(
            f"{action.label} got no answer within {seconds:g} seconds: is a worker running? "
            "Nothing was changed by this request."
        )
    if reply.get("timed_out"):
        raise ActionTimeout(
            f"{action.label} got no answer within {seconds:g} seconds: the command was "
            "still running, and was stopped."
        )
    return _result(action, reply)


async def _payload(
    session: AsyncSession, kind: EntityKind, entity_id: uuid.UUID, action: ActionType
) -> dict[str, Any]:
    """Ids only: the worker reads the values (and decrypts secrets) itself."""
    task = await task_instances.by_key(session, entity_id, action.task)
    if task is None:
        raise NotFound(f"this {kind.name} has no {action.task} task; run `aegir migrate`")
    return {
        "entity_id": str(entity_id),
        "task_id": str(task.id),
        "timeout": action.timeout.total_seconds(),
    }


def _result(action: ActionType, reply: dict[str, Any]) -> BaseModel:
    if reply.get("error"):
        raise ActionFailed(f"{action.label} could not run: {reply['error']}")
    if reply["code"] != 0:
        said = " / ".join(reply.get("stderr", [])[-5:] or reply.get("stdout", [])[-5:])
        said = said or "no message"
        raise ActionFailed(f"{action.label} failed with exit code {reply['code']}: {said}")
    data = dict(reply.get("outputs") or {})
    fields = list(action.result.model_fields)
    lines = [line.strip() for line in reply.get("stdout", []) if line.strip()]
    if not data and len(fields) == 1 and lines:
        data = {fields[0]: lines[-1]}  # one-value answers are the last line printed
    try:
        return action.result.model_validate(data)
    except ValidationError as error:
        raise ActionFailed(f"{action.label} answered something unexpected: {error}") from None
