"""Kubernetes entities as the API takes them, and a sample graph for the builders."""

from __future__ import annotations

from typing import Any

import httpx

from app.catalog.inputs import EntityInput
from app.catalog.registry import build_catalog
from app.dispatch.executor_input import typed_input
from tests.catalog.samples import entity
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


def cluster(**fields: Any) -> dict[str, Any]:
    return entity("cluster", "prod-eu", {"api_url": "https://k8s.example.com:6443", **fields})


def project(**fields: Any) -> dict[str, Any]:
    return entity("project", "acme", {"git_url": "https://git.example.com/acme/site.git", **fields})


def release(name: str = "acme-1", image: str = IMAGE) -> dict[str, Any]:
    return entity("release", name, {"image": image, "git_ref": "v1.0.0"}, project=project())


def environment(
    fields: dict[str, Any] | None = None,
    *,
    project_fields: dict[str, Any] | None = None,
    cluster_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An environment's claim as a worker holds it (JSON), its references inside."""
    return entity(
        "environment",
        "acme-prod",
        {"tier": "production", "hostnames": ["www.acme.example"], **(fields or {})},
        project=project(**(project_fields or {})),
        cluster=cluster(**(cluster_fields or {})),
        release=release(),
    )


def typed(plain: dict[str, Any]) -> EntityInput:
    """The claim's entity as executors receive it."""
    catalog = build_catalog(plugins=False)
    every = {
        key: {"type": t, "values": {}} for key, t in catalog.kinds[plain["kind"]].tasks.items()
    }
    return typed_input(catalog, plain, every, next(iter(every))).entity
