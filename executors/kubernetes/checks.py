"""Checks of a cluster (what Aegir may do there) and of a release (can its image be pulled)."""

from __future__ import annotations

from app.catalog.builtin.kubernetes.fields import ReleaseFields
from executors.kubernetes import manifests, rbac
from executors.kubernetes.apply import apply_all
from executors.kubernetes.jobs import pull_check
from executors.kubernetes.manifests import JobSpec
from executors.kubernetes.steps import Step, StepFunction

RELEASES_NAMESPACE = "aegir-releases"


async def release_verify(step: Step) -> int:
    """Whether the cluster can pull the release's image: a Job that runs nothing of it.

    Its command is a path no image has, so the container fails to start once the image
    is there (or starts, if it has one): either way the pull succeeded.
    """
    context = step.context
    image = context.entity.fields_as(ReleaseFields).image
    labels = {manifests.MANAGED_BY: "aegir", manifests.RUN_LABEL: context.run_id}
    namespace_manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": RELEASES_NAMESPACE, "labels": {manifests.MANAGED_BY: "aegir"}},
    }
    await apply_all(step.kube, [namespace_manifest], step.emit)
    job_spec = JobSpec(
        name=manifests.job_name("pull", context.run_id, context.attempt),
        namespace=RELEASES_NAMESPACE,
        labels=labels,
        task=context.key,
        image=image,
        container="pull",
        command=["/aegir-pull-check"],
        deadline=max(1, int(context.timeout)),
    )
    pulled = await pull_check(step.kube, manifests.job(job_spec), step.emit)
    await step.emit.output("pullable", pulled)
    await step.emit.log("system", f"{image}: {'pulled' if pulled else 'cannot be pulled'}")
    return 0 if pulled else 1


async def cluster_verify(step: Step) -> int:
    """The server's version, and what Aegir may not do there (a self-subject rules review)."""
    version = await step.kube.request("GET", "/version")
    text = str(version.get("gitVersion", "unknown"))
    await step.emit.log("system", f"server version {text}")
    await step.emit.output("server_version", text)
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "default"},
    }
    answer = await step.kube.create(review)
    rules = (answer.get("status") or {}).get("resourceRules") or []
    missing = rbac.missing(rules)
    await step.emit.output("missing_permissions", missing)
    for permission in missing:
        await step.emit.log("system", f"not allowed: {permission}")
    if missing:
        await step.emit.log("system", "the service account lacks what Aegir needs (README)")
    return 1 if missing else 0


CHECK_STEPS: dict[str, StepFunction] = {
    "cluster_verify": cluster_verify,
    "release_verify": release_verify,
}
