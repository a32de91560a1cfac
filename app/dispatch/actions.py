"""Actions: a task run within the request that asked, answered inside the click."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, cast

from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.types import ActionType, EntityKind
from app.db import commit_and_yield
from app.dispatch.preconditions import state_reason
from app.entities.entity import repository as entities
from app.entities.task import repository as task_instances
from app.errors import AegirError, Conflict, NotFound, Unavailable
from app.queue import QueueClient, action_reply, enqueue_action

REPLY_MARGIN = 1.0
# A failed action's output is kept this long for the "full output" link beside its message.
OUTPUT_KEPT_SECONDS = 3600


class ActionTimeout(AegirError):
    status_code = 504


class ActionFailed(AegirError):
    """The action ran and failed: ``message`` says why in words; ``output_id`` names its
    kept output (``failed_output``), when there is one."""

    status_code = 502

    def __init__(self, message: str, output_id: str | None = None) -> None:
        super().__init__(message)
        self.output_id = output_id


def output_key(output_id: str) -> str:
    return f"aegir:action-output:{output_id}"


async def perform(
    session: AsyncSession,
    redis: QueueClient,
    kind: EntityKind,
    entity_id: uuid.UUID,
    action: ActionType,
) -> BaseModel:
    if action.requires_state:
        entity = await entities.get(session, entity_id)
        reason = state_reason(kind, action.requires_state, entity.state)
        if reason:
            raise Conflict(f"{action.label}: {reason}")
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
    try:
        return _result(action, reply)
    except ActionFailed as failed:
        failed.output_id = await _keep_output(redis, job_id, entity_id, action, reply)
        raise


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


async def _keep_output(
    redis: QueueClient, job_id: str, entity_id: uuid.UUID, action: ActionType, reply: dict[str, Any]
) -> str | None:
    """Keep what the failed action printed, for the link beside its message; best effort:
    the message itself is the answer."""
    kept = {
        "entity_id": str(entity_id),
        "action": action.name,
        "code": reply.get("code"),
        "error": reply.get("error"),
        "stdout": [plain(line) for line in reply.get("stdout", [])],
        "stderr": [plain(line) for line in reply.get("stderr", [])],
    }
    try:
        await redis.set(output_key(job_id), json.dumps(kept), ex=OUTPUT_KEPT_SECONDS)
    except (RedisError, OSError):
        return None
    return job_id


async def failed_output(
    redis: QueueClient, output_id: str, entity_id: uuid.UUID
) -> dict[str, Any] | None:
    """A failed action's kept output, if it is this entity's and not yet expired."""
    if not re.fullmatch(r"[0-9a-f]{32}", output_id):
        return None
    found = await redis.get(output_key(output_id))
    if found is None:
        return None
    kept = cast(dict[str, Any], json.loads(found))
    return kept if kept.get("entity_id") == str(entity_id) else None


# Terminal colours and other control sequences, as Ansible's forced colour prints them.
_CONTROL = re.compile(
    r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f]"
)
# Ansible's line for a failed task: fatal: [host]: FAILED! => {...}
_ANSIBLE_FAILED = re.compile(
    r"^(?:fatal|failed): \[[^\]]*\]: (?:FAILED!|UNREACHABLE!) => (\{.*\})\s*$"
)
# Ansible's framing, which says nothing about why: headers, recap, per-host results.
_ANSIBLE_NOISE = re.compile(
    r"^(?:PLAY |TASK |RUNNING HANDLER |PLAY RECAP|\S+\s+: ok=|ok: |changed: |skipping: |"
    r"included: |\.\.\.ignoring|\*+$)"
)


def plain(line: str) -> str:
    """A line without its colour codes and control characters."""
    return _CONTROL.sub("", line)


def failure_message(stdout: list[str], stderr: list[str]) -> str:
    """The failing task's own words: Ansible's ``msg`` (and the command's error output),
    else the last lines that are not Ansible's framing."""
    lines = [plain(line).strip() for line in [*stdout, *stderr]]
    for line in reversed(lines):
        found = _ANSIBLE_FAILED.match(line)
        if found:
            return _ansible_reason(found.group(1)) or line
    said = [line for line in lines if line and not _ANSIBLE_NOISE.match(line)]
    return " / ".join(said[-3:]) or "it printed no message"


def _ansible_reason(result: str) -> str:
    try:
        data = json.loads(result)
    except json.JSONDecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    msg = str(data.get("msg") or "").strip()
    detail = data.get("stderr") or data.get("module_stderr") or ""
    said = [line.strip() for line in str(detail).splitlines() if line.strip()][:3]
    if msg == "non-zero return code" and said:
        msg = ""  # the command's own words say more
    return ": ".join(part for part in (msg, " / ".join(said)) if part)


def _result(action: ActionType, reply: dict[str, Any]) -> BaseModel:
    if reply.get("error"):
        raise ActionFailed(f"{action.label} could not run: {reply['error']}")
    if reply["code"] != 0:
        said = failure_message(reply.get("stdout", []), reply.get("stderr", []))
        raise ActionFailed(f"{action.label} failed: {said}")
    data = dict(reply.get("outputs") or {})
    fields = list(action.result.model_fields)
    lines = [line.strip() for line in reply.get("stdout", []) if line.strip()]
    if not data and len(fields) == 1 and lines:
        data = {fields[0]: lines[-1]}  # one-value answers are the last line printed
    try:
        return action.result.model_validate(data)
    except ValidationError as error:
        raise ActionFailed(f"{action.label} answered something unexpected: {error}") from None
