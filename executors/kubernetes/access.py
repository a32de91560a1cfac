"""Actions that reach into a running environment: a one-time login, the pods' logs."""

from __future__ import annotations

from app.catalog.builtin.kubernetes.tasks import LogsFields
from executors.base import Emitter
from executors.kubernetes import manifests
from executors.kubernetes.manifests import EnvironmentSpec
from executors.kubernetes.steps import Step, StepFunction, run_in_job


async def _ready_pod(step: Step, spec: EnvironmentSpec) -> str | None:
    """A running application pod whose containers are all ready, if there is one."""
    selector = manifests.selector(spec, manifests.APP)
    for pod in await step.kube.list("Pod", spec.namespace, selector):
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and status.get("phase") == "Running":
            return str(pod["metadata"]["name"])
    return None


async def login(step: Step) -> int:
    """``drush uli`` in the CLI container: exec in a ready pod, else a short Job."""
    spec = step.spec()
    uri = f"https://{spec.hostnames[0]}" if spec.hostnames else "http://localhost"
    command = ["drush", "user:login", f"--uri={uri}", "--no-browser"]
    pod = await _ready_pod(step, spec)
    if pod is not None:
        await step.emit.log("system", f"exec in {pod}/{spec.cli_container}: drush user:login")
        found = await step.kube.exec(spec.namespace, pod, spec.cli_container, command)
        for line in found.stderr.splitlines():
            await step.emit.log("stderr", line)
        code, lines = found.exit_code, found.stdout.splitlines()
    else:
        await step.emit.log("system", "no ready pod: running drush user:login in a Job")
        keeper = _Lines(step.emit)
        code = await run_in_job(Step(step.context, step.kube, keeper, step.cancel), spec, command)
        lines = keeper.stdout
    urls = [line.strip() for line in lines if line.strip().startswith(("http://", "https://"))]
    if code == 0 and urls:
        await step.emit.output("url", urls[-1])
    return code if code != 0 or urls else 1


class _Lines:
    """An emitter that passes everything on and keeps the stdout lines (a login's link)."""

    def __init__(self, emit: Emitter) -> None:
        self.emit = emit
        self.stdout: list[str] = []

    async def log(self, stream: str, line: str) -> None:
        if stream == "stdout":
            self.stdout.append(line)
        await self.emit.log(stream, line)

    async def output(self, name: str, value: object) -> None:
        await self.emit.output(name, value)


async def logs(step: Step) -> int:
    """The last lines of each application pod's web container, into the ``lines`` output."""
    values = step.context.values
    assert isinstance(values, LogsFields)
    spec = step.spec()
    found: list[str] = []
    for pod in await step.kube.list("Pod", spec.namespace, manifests.selector(spec, manifests.APP)):
        name = pod["metadata"]["name"]
        path = f"/api/v1/namespaces/{spec.namespace}/pods/{name}/log"
        query = [("container", manifests.WEB_CONTAINER), ("tailLines", str(values.lines))]
        async with step.kube.stream(path, query) as body:
            text = (await body.read()).decode("utf-8", "replace")
        found += [f"{name}: {line}" for line in text.splitlines()]
    await step.emit.output("lines", found)
    return 0


ACCESS_STEPS: dict[str, StepFunction] = {
    "environment_login": login,
    "environment_logs": logs,
}
