"""The Kubernetes executor: one step of ``steps.STEPS`` against the entity's cluster.

The cluster is the entity itself (a cluster's verify) or the one it references (an
environment). A step ends with its exit code; an API error is logged and fails the task
with 1; cancel stops the step (a Job step deletes its Job first) and answers 130.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager

import aiohttp

from app.catalog.builtin.kubernetes.fields import ClusterFields
from app.catalog.builtin.kubernetes.tasks import CredentialsFields
from app.catalog.inputs import EntityInput, InvalidInput
from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, Emitter, ExecutorUnavailable, TaskContext
from executors.kubernetes.access import ACCESS_STEPS
from executors.kubernetes.backups import BACKUP_STEPS
from executors.kubernetes.checks import CHECK_STEPS
from executors.kubernetes.client import Kube, KubeError, bearer_token, connect
from executors.kubernetes.steps import STEPS, Step, StepFunction

ALL_STEPS = STEPS | BACKUP_STEPS | ACCESS_STEPS | CHECK_STEPS
# Beyond the task's timeout, what a step gets to clean up (delete its Job) on its own.
SLACK = 5.0


def cluster_of(context: TaskContext) -> EntityInput:
    """The entity itself (a cluster), the cluster a task names (a release's verify), or the
    one the entity references (an environment)."""
    entity = context.entity
    if entity.kind.name == "cluster":
        return entity
    named = context.tasks[context.key].refs.get("cluster")
    return named or entity.reference("cluster")


def _connect(context: TaskContext) -> AbstractAsyncContextManager[Kube]:
    cluster = cluster_of(context)
    fields = cluster.fields_as(ClusterFields)
    credentials = cluster.credentials
    assert credentials is None or isinstance(credentials, CredentialsFields)
    return connect(fields, bearer_token(fields, credentials))


class KubernetesExecutor:
    """Runs the step named ``step`` (a task type name) on the entity's cluster."""

    def __init__(self, step: str) -> None:
        self.step = step

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        function = ALL_STEPS.get(self.step)
        if function is None:
            raise ExecutorUnavailable(f"the Kubernetes step {self.step} is not built yet")
        try:
            async with _connect(context) as kube:
                step = Step(context, kube, emit, cancel)
                return await _supervise(function, step)
        except InvalidInput as error:
            await emit.log("system", f"cannot run {self.step}: {error}")
            return 1
        except KubeError as error:
            await emit.log("system", f"the cluster refused: {error}")
            return 1
        except aiohttp.ClientError as error:
            await emit.log("system", f"cannot reach the cluster: {error}")
            return 1


async def _supervise(function: StepFunction, step: Step) -> int:
    """The step's code, unless cancel or the task's timeout comes first."""
    work: asyncio.Task[int] = asyncio.create_task(function(step))
    cancelled = asyncio.create_task(step.cancel.wait())
    limit = step.context.timeout + SLACK
    try:
        done, _ = await asyncio.wait(
            {work, cancelled}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        if work in done:
            return work.result()
        if step.cancel.is_set():
            # A Job step deletes its Job and answers 130 by itself; give it the grace.
            done, _ = await asyncio.wait({work}, timeout=step.context.cancel_grace + SLACK)
            if work in done:
                return work.result()
        reason = "cancelled" if step.cancel.is_set() else "timed out"
        await step.emit.log("system", f"{reason}: stopping the step")
        return EXIT_CANCELLED if step.cancel.is_set() else EXIT_TIMEOUT
    finally:
        cancelled.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
