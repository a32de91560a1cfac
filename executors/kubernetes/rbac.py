"""What the back-end needs of a cluster, checked against a self-subject rules review.

The README's "Kubernetes" section gives the same list as a ClusterRole.
"""

from __future__ import annotations

from typing import Any

# (API group, resource, verbs): everything the steps do. A server-side apply that creates
# its object needs "create" besides "patch".
NEEDED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "namespaces", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "secrets", ("get", "list", "create", "patch", "delete")),
    ("", "configmaps", ("get", "list", "create", "patch", "delete")),
    ("", "services", ("get", "list", "create", "patch", "delete")),
    ("", "persistentvolumeclaims", ("get", "list", "create", "patch")),
    # Backups: their volume is kept (Retain) when the namespace goes, and bound again.
    ("", "persistentvolumes", ("get", "list", "patch")),
    ("", "pods", ("get", "list", "watch")),
    ("", "pods/log", ("get",)),
    ("", "pods/exec", ("create", "get")),
    ("", "events", ("list", "watch")),
    ("apps", "deployments", ("get", "list", "watch", "create", "patch", "delete")),
    ("apps", "statefulsets", ("get", "list", "watch", "create", "patch", "delete")),
    ("batch", "jobs", ("get", "list", "watch", "create", "delete")),
    ("networking.k8s.io", "ingresses", ("get", "list", "create", "patch", "delete")),
)


def _allows(rule: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    def has(key: str, value: str) -> bool:
        found = rule.get(key) or []
        return "*" in found or value in found

    return has("apiGroups", group) and has("resources", resource) and has("verbs", verb)


def missing(rules: list[dict[str, Any]]) -> list[str]:
    """``"verb group/resource"`` for each permission no rule grants."""
    return [
        f"{verb} {group or 'core'}/{resource}"
        for group, resource, verbs in NEEDED
        for verb in verbs
        if not any(_allows(rule, group, resource, verb) for rule in rules)
    ]
