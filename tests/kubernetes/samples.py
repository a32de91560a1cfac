"""Kubernetes entities as the API takes them, and a sample graph for the builders."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.factories import post_ok

DIGEST = "sha256:" + "a" * 64
OLD_DIGEST = "sha256:" + "b" * 64
IMAGE = f"registry.example.com/acme/site@{DIGEST}"
OLD_IMAGE = f"registry.example.com/acme/site@{OLD_DIGEST}"


async def make_kubernetes_graph(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """A cluster, a project, a release of it and an environment running that release."""
    cluster = await post_ok(
        client,
        "/api/v1/clusters",
        {"name": "prod-eu", "fields": {"api_url": "https://k8s.example.com:6443"}},
    )
    project = await post_ok(
        client,
        "/api/v1/projects",
        {"name": "acme", "fields": {"git_url": "https://git.example.com/acme/site.git"}},
    )
    release = await post_ok(
        client,
        "/api/v1/releases",
        {
            "name": "acme-1",
            "fields": {"image": IMAGE, "git_ref": "v1.0.0"},
            "references": {"project": project["id"]},
        },
    )
    references = {"project": project["id"], "cluster": cluster["id"], "release": release["id"]}
    environment = await post_ok(
        client,
        "/api/v1/environments",
        {"name": "acme-prod", "fields": {"tier": "production", "hostnames": ["www.acme.example"]},
         "references": references},
    )  # fmt: skip
    return {"cluster": cluster, "project": project, "release": release, "environment": environment}
