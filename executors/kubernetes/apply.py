"""Server-side apply of rendered manifests, one log line per object, and pruning.

Pruning deletes the objects of the environment, in the components a step owns, that
were not rendered this time (the Ingress of an environment that lost its hostnames,
the maintenance page once it is enabled again). Claims of files and databases are
never pruned: data goes only with the namespace.
"""

from __future__ import annotations

from collections.abc import Iterable

from executors.base import Emitter
from executors.kubernetes import manifests
from executors.kubernetes.client import Kube, Object
from executors.kubernetes.manifests import EnvironmentSpec, Manifest

PRUNABLE = ("Ingress", "Service", "Deployment", "StatefulSet", "ConfigMap", "Secret")


def _where(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    scope = f"{meta['namespace']}/" if "namespace" in meta else ""
    return f"{manifest['kind']} {scope}{meta['name']}"


async def apply_all(kube: Kube, found: Iterable[Manifest], emit: Emitter) -> list[Object]:
    """Apply each manifest in order; the objects as the server now holds them."""
    applied = []
    for manifest in found:
        stored = await kube.apply(manifest)
        generation = stored.get("metadata", {}).get("generation")
        suffix = f" (generation {generation})" if generation else ""
        await emit.log("system", f"applied {_where(manifest)}{suffix}")
        applied.append(stored)
    return applied


async def prune(
    kube: Kube,
    spec: EnvironmentSpec,
    rendered: Iterable[Manifest],
    components: Iterable[str],
    emit: Emitter,
) -> None:
    """Delete the environment's objects of ``components`` that ``rendered`` lacks."""
    keep = {(m["kind"], m["metadata"]["name"]) for m in rendered}
    owned = set(components)
    selector = {manifests.ENVIRONMENT_LABEL: spec.environment}
    for kind in PRUNABLE:
        for item in await kube.list(kind, spec.namespace, selector):
            meta = item.get("metadata", {})
            component = (meta.get("labels") or {}).get(manifests.COMPONENT_LABEL)
            if component in owned and (kind, meta.get("name")) not in keep:
                await kube.remove(kind, meta["name"], spec.namespace)
                await emit.log("system", f"pruned {kind} {spec.namespace}/{meta['name']}")
