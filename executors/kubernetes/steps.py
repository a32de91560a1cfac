"""The Kubernetes back-end's steps, by task type name: what each task does on the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.catalog.builtin.kubernetes import RELEASE_TASKS
from app.catalog.builtin.kubernetes.fields import ProjectFields
from app.catalog.builtin.kubernetes.tasks import (
    HISTORY,
    DatabaseFields,
    Deployed,
    DeployFields,
    DeployOutputs,
    InstallFields,
    PromoteFields,
    RunCommandFields,
    ScaleFields,
)
from app.catalog.inputs import EntityInput, InvalidInput
from executors.base import Emitter, TaskContext
from executors.kubernetes import manifests
from executors.kubernetes.apply import apply_all, prune
from executors.kubernetes.client import Kube
from executors.kubernetes.jobs import run_job
from executors.kubernetes.manifests import EnvironmentSpec, JobSpec
from executors.kubernetes.rollout import watch_rollout
from executors.kubernetes.spec import environment_spec
from executors.kubernetes.watching import follow

APPLICATION = (manifests.APP, manifests.MAINTENANCE)


@dataclass(frozen=True)
class Step:
    """One task on one cluster: its typed input, the client, where to report, cancel."""

    context: TaskContext
    kube: Kube
    emit: Emitter
    cancel: asyncio.Event

    def spec(
        self,
        *,
        release: EntityInput | None = None,
        env: dict[str, str] | None = None,
        replicas: int | None = None,
        disabled: bool = False,
    ) -> EnvironmentSpec:
        """The environment's spec for this run; see ``environment_spec`` for the overrides."""
        return environment_spec(
            self.context.entity,
            self.context.run_id,
            release=release,
            env=env,
            replicas=replicas,
            disabled=disabled,
            timeout=self.context.timeout,
        )


StepFunction = Callable[[Step], Coroutine[Any, Any, int]]


async def namespace(step: Step) -> int:
    await apply_all(step.kube, [manifests.namespace(step.spec())], step.emit)
    return 0


async def database(step: Step) -> int:
    values = step.context.values
    assert isinstance(values, DatabaseFields)
    if values.db_password is None:
        raise InvalidInput("the database task has no password")
    spec = step.spec()
    await apply_all(step.kube, manifests.database(spec, values.db_password), step.emit)
    return await _statefulset_ready(step, spec.namespace, manifests.DATABASE)


async def _statefulset_ready(step: Step, namespace: str, name: str) -> int:
    async with asyncio.timeout(step.context.timeout):
        async for state in follow(step.kube, "StatefulSet", namespace, name):
            ready = ((state or {}).get("status") or {}).get("readyReplicas", 0)
            if ready >= 1:
                await step.emit.log("system", f"{name}: ready")
                return 0
    return 1


async def _roll_out(step: Step, spec: EnvironmentSpec) -> int:
    """Apply the application of ``spec``, prune what it no longer has, watch the rollout."""
    rendered = manifests.environment(spec)
    await apply_all(step.kube, rendered, step.emit)
    await prune(step.kube, spec, rendered, APPLICATION, step.emit)
    found = await watch_rollout(
        step.kube, spec.namespace, manifests.APP, step.emit, step.context.timeout
    )
    return 0 if found.done else 1


async def application(step: Step) -> int:
    return await _roll_out(step, step.spec(disabled=step.context.entity.state == "disabled"))


async def disable(step: Step) -> int:
    return await _roll_out(step, step.spec(disabled=True))


async def enable(step: Step) -> int:
    return await _roll_out(step, step.spec())


async def scale(step: Step) -> int:
    values = step.context.values
    assert isinstance(values, ScaleFields)
    code = await _roll_out(step, step.spec(replicas=values.replicas))
    await _observe(step)
    return code


async def verify(step: Step) -> int:
    return 0 if await _observe(step) is not None else 1


async def _observe(step: Step) -> int | None:
    spec = step.spec()
    found = await step.kube.get("Deployment", manifests.APP, spec.namespace)
    if found is None:
        await step.emit.log("system", f"no Deployment {spec.namespace}/{manifests.APP}")
        return None
    ready = int((found.get("status") or {}).get("readyReplicas", 0))
    await step.emit.log("system", f"{manifests.APP}: {ready} ready replicas")
    await step.emit.output("ready_replicas", ready)
    await step.emit.output("observed_at", datetime.now(UTC).isoformat())
    return ready


async def deploy(step: Step) -> int:
    """Deploy the release named by the task; re-apply the previous one if the rollout fails."""
    values = step.context.values
    assert isinstance(values, DeployFields)
    release = step.context.tasks[step.context.key].refs.get("release")
    if release is None:
        raise InvalidInput(f"no release {values.release}")
    return await _deploy(step, release)


async def _deploy(step: Step, release: EntityInput) -> int:
    entity = step.context.entity
    _same_project(entity, release)
    current = entity.reference("release")
    previous = _current(step)
    target = step.spec(release=release)
    await step.emit.log("system", f"deploying release {release.name} ({target.image})")
    if await _roll_out(step, target) == 0:
        await _deployed(step, target, previous)
        return 0
    await step.emit.log("system", f"rollout failed: re-applying release {current.name}")
    await _roll_out(step, previous)
    return 1


def _same_project(entity: EntityInput, release: EntityInput) -> None:
    project = entity.reference("project").name
    if release.reference("project").name != project:
        raise InvalidInput(f"release {release.name} is not a release of project {project}")


def _latest(step: Step) -> DeployOutputs:
    """What the newest deploy, rollback or promote applied (empty if none has run)."""
    view = step.context.view
    found = [view.outputs_of(key, DeployOutputs) for key in RELEASE_TASKS if key in view.tasks]
    never = datetime.min.replace(tzinfo=UTC)
    return max(found, key=lambda outputs: outputs.applied_at or never, default=DeployOutputs())


def _current(step: Step) -> EnvironmentSpec:
    """The environment as it runs now: its release, with the variables last applied."""
    stored = _latest(step)
    project_env = step.context.entity.reference("project").fields_as(ProjectFields).env
    return step.spec(env=stored.env if stored.env is not None else project_env)


async def _deployed(step: Step, target: EnvironmentSpec, previous: EnvironmentSpec) -> None:
    """Write what was applied and what it replaced (a rollback's whole input), and the
    environment's history of deploys with this one first."""
    entry = Deployed(
        at=datetime.now(UTC), by=step.context.key, release=target.release,
        image=target.image, run=step.context.run_id,
    )  # fmt: skip
    history = [e.model_dump(mode="json") for e in [entry, *_history(step)][:HISTORY]]
    outputs: dict[str, Any] = {
        "release": target.release,
        "image": target.image,
        "env": target.env,
        "previous_release": previous.release,
        "previous_image": previous.image,
        "previous_env": previous.env,
        "applied_at": history[0]["at"],
        "history": history,
    }
    for name, value in outputs.items():
        await step.emit.output(name, value)


def _history(step: Step) -> list[Deployed]:
    """The deploys the three tasks know of, newest first, each once."""
    view = step.context.view
    known = {
        entry.run: entry
        for key in RELEASE_TASKS
        if key in view.tasks
        for entry in view.outputs_of(key, DeployOutputs).history
    }
    return sorted(known.values(), key=lambda entry: entry.at, reverse=True)


async def rollback(step: Step) -> int:
    """Re-apply the release the last deploy replaced: its image and its variables.

    The last deploy is the newest of deploy, rollback and promote: a second rollback
    goes back to what the first replaced, as ``kubectl rollout undo`` does.
    """
    stored = _latest(step)
    if stored.previous_image is None or stored.previous_release is None:
        await step.emit.log("system", "no deploy to roll back: the deploy task has no outputs")
        return 1
    current = _current(step)
    target = EnvironmentSpec.model_validate(
        {
            **current.model_dump(),
            "release": stored.previous_release,
            "image": stored.previous_image,
            "env": stored.previous_env if stored.previous_env is not None else current.env,
        }
    )
    await step.emit.log("system", f"rolling back to release {target.release} ({target.image})")
    if await _roll_out(step, target) != 0:
        return 1
    await _deployed(step, target, current)
    return 0


async def install(step: Step) -> int:
    values = step.context.values
    assert isinstance(values, InstallFields)
    if values.admin_password is None:
        raise InvalidInput("the install task has no admin password")
    spec = step.spec()
    secret = f"install-{step.context.attempt}"
    await apply_all(
        step.kube, [manifests.task_secret(spec, secret, values.admin_password)], step.emit
    )
    command = [
        "drush", "site:install", values.profile, "--yes",
        f"--site-name={values.site_name}", f"--account-mail={values.admin_email}",
        "--account-pass=$(ADMIN_PASSWORD)",
    ]  # fmt: skip
    return await run_in_job(step, spec, command, {"ADMIN_PASSWORD": secret})


async def run_command(step: Step) -> int:
    values = step.context.values
    assert isinstance(values, RunCommandFields)
    return await run_in_job(step, step.spec(), list(values.command))


async def run_in_job(
    step: Step,
    spec: EnvironmentSpec,
    command: list[str],
    secret_env: dict[str, str] | None = None,
    *,
    backups: bool = False,
) -> int:
    """``command`` in the CLI container of the current release, in this task's Job."""
    context = step.context
    job_spec = JobSpec(
        name=manifests.job_name(context.key, context.run_id, context.attempt),
        namespace=spec.namespace,
        labels=manifests.labels(spec),
        task=context.key,
        image=spec.image,
        container=spec.cli_container,
        command=command,
        deadline=max(1, int(context.timeout)),
        secret_env=secret_env or {},
        backups=backups,
    )
    return await run_job(
        step.kube,
        manifests.job(job_spec, spec),
        step.emit,
        step.cancel,
        context.timeout,
        context.secrets,
    )


async def delete_namespace(step: Step) -> int:
    """Delete the environment's namespace and wait until it is gone."""
    spec = step.spec()
    if not await step.kube.remove("Namespace", spec.namespace, propagation="Foreground"):
        await step.emit.log("system", f"namespace {spec.namespace} was already gone")
        return 0
    await step.emit.log("system", f"deleting namespace {spec.namespace}")
    async with asyncio.timeout(step.context.timeout):
        async for state in follow(step.kube, "Namespace", None, spec.namespace):
            if state is None:
                await step.emit.log("system", f"namespace {spec.namespace} is gone")
                return 0
    return 1


async def promote(step: Step) -> int:
    """Deploy the release another environment runs (the same image: no rebuild)."""
    values = step.context.values
    assert isinstance(values, PromoteFields)
    source = step.context.tasks[step.context.key].refs.get("source")
    if source is None:
        raise InvalidInput(f"no environment {values.source}")
    await step.emit.log("system", f"promoting what {source.name} runs")
    return await _deploy(step, source.reference("release"))


STEPS: dict[str, StepFunction] = {
    "environment_namespace": namespace,
    "environment_database": database,
    "environment_application": application,
    "environment_install": install,
    "environment_verify": verify,
    "environment_deploy": deploy,
    "environment_rollback": rollback,
    "environment_scale": scale,
    "environment_run_command": run_command,
    "environment_disable": disable,
    "environment_enable": enable,
    "environment_delete": delete_namespace,
    "environment_install_cleanup": delete_namespace,
    "environment_promote": promote,
}
