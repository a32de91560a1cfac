"""Action tasks: run within the asking request, answered through a Redis list."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from typing import Any

from app.catalog.inputs import InvalidInput
from app.db import session_scope
from app.dispatch.executor_input import add_credentials, entity_data, task_data, typed_input
from app.entities.task import repository as task_instances
from executors import executor_for
from executors.ansible.direct import preload
from executors.base import EXIT_TIMEOUT, ExecutorUnavailable, TaskContext
from workers.runner import WorkerState, ssh_access

KEEP_LINES = 50

# Imported with the worker: Ansible's templating, which actions use (executors.ansible.direct).
preload()


class CollectingEmitter:
    """An action's lines and outputs, kept in memory for the answer."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.stdout: deque[str] = deque(maxlen=KEEP_LINES)
        self.stderr: deque[str] = deque(maxlen=KEEP_LINES)
        self.outputs: dict[str, Any] = {}
        self.secrets = tuple(s for s in secrets if s)

    async def log(self, stream: str, line: str) -> None:
        for secret in self.secrets:
            line = line.replace(secret, "****")
        (self.stdout if stream == "stdout" else self.stderr).append(line)

    async def output(self, name: str, value: Any) -> None:
        self.outputs[name] = value


async def execute_action(state: WorkerState, payload: dict[str, Any]) -> dict[str, Any]:
    catalog, settings = state.catalog, state.settings
    entity_id, task_id = uuid.UUID(payload["entity_id"]), uuid.UUID(payload["task_id"])
    async with session_scope(state.sessionmaker, writes=False) as session:
        every = await task_instances.of_entity(session, entity_id)
        known = [each for each in every if each.type in catalog.tasks]
        tasks, secrets = task_data(catalog, state.box, known)
        entity = await entity_data(session, entity_id)
        secrets += await add_credentials(session, catalog, state.box, [entity])
    task = next((each for each in every if each.id == task_id), None)
    if task is None:
        return {"code": 127, "error": "the task is gone", "outputs": {}, "stdout": [], "stderr": []}
    task_type = catalog.tasks[task.type]
    emitter = CollectingEmitter(secrets)
    try:
        typed = typed_input(catalog, entity, tasks, task.key)
    except InvalidInput as error:
        return {"code": 127, "error": str(error), "outputs": {}, "stdout": [], "stderr": []}
    context = TaskContext(
        run_id=payload["job_id"],
        attempt=1,
        key=task.key,
        task_type=task_type.name,
        values=typed.values,
        entity=typed.entity,
        tasks=typed.tasks,
        work_dir=settings.work_dir or settings.var_dir / "work",
        timeout=float(payload["timeout"]),
        cancel_grace=settings.cancel_grace.total_seconds(),
        secrets=secrets,
        acme=settings.acme(),
    )
    try:
        executor = executor_for(task_type, ssh_access(settings), action=True)
        code = await executor.run(context, emitter, asyncio.Event())
    except ExecutorUnavailable as error:
        return {"code": 127, "error": str(error), "outputs": {}, "stdout": [], "stderr": []}
    return {
        "code": code,
        "timed_out": code == EXIT_TIMEOUT,
        "error": None,
        "outputs": emitter.outputs,
        "stdout": list(emitter.stdout),
        "stderr": list(emitter.stderr),
    }


def encode_reply(reply: dict[str, Any]) -> str:
    return json.dumps(reply, default=str)
