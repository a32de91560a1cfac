"""A task's Job: created (or found again by its name), its pod's log followed line by line
into the run's log, its exit code taken from the container's termination.

A stdout line ``::output:: {"name": value}`` writes outputs back instead of being logged,
as with the local executor. Secrets the run knows are masked in every line. Cancel
deletes the Job with foreground propagation (its pod goes first) and answers 130; the
task's timeout, if the Job's own deadline did not end it first, does the same with 124.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, Emitter, write_outputs
from executors.kubernetes.client import Kube, KubeError, Object
from executors.kubernetes.watching import Gone, events

MASK = "**********"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# A Job that failed without a pod ever running (deadline, quota) has no exit code.
EXIT_NO_POD = 1
# A follow the server ended while the container still runs is reopened after this pause.
RECONNECT_PAUSE = 0.2


async def run_job(
    kube: Kube,
    manifest: Object,
    emit: Emitter,
    cancel: asyncio.Event,
    limit: float,
    secrets: Sequence[str] = (),
) -> int:
    """Run ``manifest`` (a Job) to its end; its container's exit code."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    await _create_or_find(kube, manifest, emit)
    work = asyncio.create_task(_follow(kube, namespace, name, emit, secrets))
    cancelled = asyncio.create_task(cancel.wait())
    done, _ = await asyncio.wait({work, cancelled}, timeout=limit, return_when="FIRST_COMPLETED")
    cancelled.cancel()
    if work in done:
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    reason = "cancelled" if cancel.is_set() else f"timed out after {limit:g}s"
    await emit.log("system", f"{reason}: deleting Job {name}")
    await kube.remove("Job", name, namespace, propagation="Foreground")
    return EXIT_CANCELLED if cancel.is_set() else EXIT_TIMEOUT


async def _create_or_find(kube: Kube, manifest: Object, emit: Emitter) -> None:
    name = manifest["metadata"]["name"]
    try:
        await kube.create(manifest)
    except KubeError as error:
        if error.status != 409:
            raise
        # A re-run of the same attempt (a worker restarted) follows the Job it started.
        await emit.log("system", f"Job {name} exists: following it")
        return
    await emit.log("system", f"created Job {name}")


async def _follow(
    kube: Kube, namespace: str, job: str, emit: Emitter, secrets: Sequence[str]
) -> int:
    try:
        pod = await _first_pod(kube, namespace, job)
    except PullError as error:
        await emit.log("system", f"cannot pull the image: {error}")
        await kube.remove("Job", job, namespace, propagation="Foreground")
        return EXIT_NO_POD
    if pod is None:
        return await _failed_without_pod(kube, namespace, job, emit)
    name = pod["metadata"]["name"]
    await emit.log("system", f"pod {name} started")
    await _stream_log(kube, namespace, name, emit, secrets)
    code = await _exit_code(kube, namespace, name)
    await emit.log("system", f"pod {name} exited with code {code}")
    return code


class PullError(Exception):
    """The pod's image cannot be pulled (a digest that is not in the registry, no access)."""


PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


async def _first_pod(kube: Kube, namespace: str, job: str) -> Object | None:
    """The Job's pod once its container has started or ended; ``None`` if the Job failed
    before any pod ran; ``PullError`` if its image cannot be pulled."""
    while True:
        try:
            async for event in events(kube, "Pod", namespace, labels=f"{JOB_NAME_LABEL}={job}"):
                if _has_run(event["object"]):
                    return dict(event["object"])
                _check_pull(event["object"])
            return None
        except Gone:
            continue


def _check_pull(pod: Object) -> None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_ERRORS:
            raise PullError(f"{waiting['reason']}: {waiting.get('message', '')}")


async def pull_check(kube: Kube, manifest: Object, emit: Emitter) -> bool:
    """Whether the Job's image gets pulled: its container starts (or fails to start: the
    image was there), or waits on a pull error. The Job is deleted either way."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    await _create_or_find(kube, manifest, emit)
    try:
        pulled = await _first_pod(kube, namespace, name) is not None
    except PullError as error:
        await emit.log("system", f"cannot pull the image: {error}")
        pulled = False
    await kube.remove("Job", name, namespace, propagation="Foreground")
    return pulled


def _has_run(pod: Object) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


async def _stream_log(
    kube: Kube, namespace: str, pod: str, emit: Emitter, secrets: Sequence[str]
) -> None:
    """The container's log, line by line as it comes, until the container has ended.

    With ``timestamps=true`` each line starts with its RFC 3339 time: a reconnection (the
    connection dropped, or the server closed a long follow) asks for ``sinceTime`` of the
    last line seen and skips the lines already given at that time, so nothing is logged
    twice or lost.
    """
    cursor = _Cursor()
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    while True:
        try:
            async with kube.stream(path, cursor.query()) as body:
                skip = cursor.seen_at_last
                while raw := await body.readline():
                    text = cursor.take(raw.decode("utf-8", "replace").rstrip("\n"), skip)
                    if text is None:
                        skip -= 1
                        continue
                    await _line(text.rstrip("\r"), emit, secrets)
        except (OSError, asyncio.IncompleteReadError):
            await emit.log("system", "pod log interrupted: reconnecting")
            continue
        if _terminated(await kube.get("Pod", pod, namespace) or {}) is not None:
            return
        await asyncio.sleep(RECONNECT_PAUSE)


class _Cursor:
    """The last timestamp read, and how many lines carried it."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.seen_at_last = 0

    def query(self) -> list[tuple[str, str]]:
        query = [("follow", "true"), ("timestamps", "true")]
        return query + ([("sinceTime", self.last)] if self.last else [])

    def take(self, raw: str, skip: int) -> str | None:
        """The line's text, or ``None`` when it was given before the reconnection."""
        stamp, _, text = raw.partition(" ")
        if stamp == self.last and skip > 0:
            return None
        self.seen_at_last = self.seen_at_last + 1 if stamp == self.last else 1
        self.last = stamp
        return text


async def _line(line: str, emit: Emitter, secrets: Sequence[str]) -> None:
    for secret in secrets:
        if secret:
            line = line.replace(secret, MASK)
    if not await write_outputs(line, emit):
        await emit.log("stdout", line)


async def _exit_code(kube: Kube, namespace: str, pod: str) -> int:
    """The container's exit code, once the kubelet has recorded its termination."""
    while True:
        try:
            async for event in events(kube, "Pod", namespace, fields=f"metadata.name={pod}"):
                code = _terminated(event["object"])
                if code is not None:
                    return code
        except Gone:
            continue


def _terminated(pod: dict[str, Any]) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode", EXIT_NO_POD))
    return None


async def _failed_without_pod(kube: Kube, namespace: str, job: str, emit: Emitter) -> int:
    found = await kube.get("Job", job, namespace) or {}
    for condition in (found.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            await emit.log("system", f"Job {job} failed: {condition.get('reason', '')}")
            deadline = condition.get("reason") == "DeadlineExceeded"
            return EXIT_TIMEOUT if deadline else EXIT_NO_POD
    await emit.log("system", f"Job {job} ended without a pod")
    return EXIT_NO_POD
