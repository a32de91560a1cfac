"""A Deployment's rollout, watched (not polled) until kubectl's own test says it is done.

Done (``kubectl rollout status``): the controller has observed the latest generation,
and updated = desired = available replicas, with no old replica left. It fails on
``ProgressDeadlineExceeded`` (the Deployment's ``progressDeadlineSeconds`` without
progress) or when the task's timeout comes first: it never hangs. Warning events of the
namespace are logged while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from executors.base import Emitter
from executors.kubernetes.client import Kube, Object
from executors.kubernetes.watching import Gone, events, follow


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands: ``done``, ``failed`` (with why), or waiting (with what for)."""

    message: str
    done: bool = False
    failed: bool = False


def progress(deployment: Object | None) -> Progress:
    """kubectl's ``DeploymentStatusViewer``, on a Deployment as the API returns it."""
    if deployment is None:
        return Progress("the Deployment is gone", failed=True)
    meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return Progress("waiting for the controller to see the new spec")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return Progress(
                f"ProgressDeadlineExceeded: {condition.get('message', '')}", failed=True
            )
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return Progress(f"{updated} of {wanted} new replicas updated")
    if status.get("replicas", 0) > updated:
        old = status.get("replicas", 0) - updated
        return Progress(f"{old} old replicas pending termination")
    available = status.get("availableReplicas", 0)
    if available < updated:
        return Progress(f"{available} of {updated} updated replicas available")
    return Progress(f"rolled out: {available} of {wanted} replicas available", done=True)


async def watch_rollout(
    kube: Kube, namespace: str, name: str, emit: Emitter, limit: float
) -> Progress:
    """Follow the rollout, one log line per change of progress, until done or failed."""
    warnings = asyncio.create_task(_log_warnings(kube, namespace, emit))
    last = ""
    try:
        async with asyncio.timeout(limit):
            async for state in follow(kube, "Deployment", namespace, name):
                found = progress(state)
                if found.message != last:
                    await emit.log("system", f"rollout of {name}: {found.message}")
                    last = found.message
                if found.done or found.failed:
                    return found
    except TimeoutError:
        message = f"rollout of {name} not done after the task's timeout ({limit:g}s)"
        await emit.log("system", message)
        return Progress(message, failed=True)
    finally:
        warnings.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warnings
    raise AssertionError("follow() never ends")


async def _log_warnings(kube: Kube, namespace: str, emit: Emitter) -> None:
    """Warning events of the namespace (a failing probe, a pull error) into the run's log."""
    seen: set[str] = set()
    while True:
        try:
            async for event in events(kube, "Event", namespace, fields="type=Warning"):
                await _log_event(event["object"], seen, emit)
        except Gone:
            continue


async def _log_event(event: dict[str, Any], seen: set[str], emit: Emitter) -> None:
    if event.get("type") != "Warning":
        return
    uid = event.get("metadata", {}).get("uid") or event.get("metadata", {}).get("name", "")
    count = str(event.get("count", ""))
    if uid + count in seen:
        return
    seen.add(uid + count)
    involved = event.get("involvedObject", {})
    what = f"{involved.get('kind', '?')}/{involved.get('name', '?')}"
    await emit.log(
        "system", f"warning: {what}: {event.get('reason', '')}: {event.get('message', '')}"
    )
