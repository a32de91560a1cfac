"""The Kubernetes kinds in the catalogue: their fields' rules, and the graphs they create."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.builtin.kubernetes.fields import (
    ClusterFields,
    EnvironmentFields,
    ProjectFields,
    ReleaseFields,
)
from app.catalog.registry import build_catalog
from app.catalog.types import KubernetesStep
from app.entities.task.models import TaskInstance
from executors.kubernetes.executor import ALL_STEPS
from tests.kubernetes.samples import DIGEST, IMAGE, make_kubernetes_graph

# Not a certificate, but base64 over two PEM lines: what the field checks.
CERT_BODY = base64.b64encode(bytes(range(93))).decode()


def test_every_kubernetes_task_that_runs_has_a_step_of_the_kubernetes_back_end() -> None:
    catalog = build_catalog(plugins=False)
    for name in ("cluster", "project", "release", "environment"):
        kind = catalog.kinds[name]
        run = {key for op in kind.operations.values() for key in op.steps + op.on_failure}
        run |= {action.task for action in kind.actions.values()}
        for key in run:
            binding = catalog.tasks[kind.tasks[key]].executor
            assert isinstance(binding, KubernetesStep)
            assert binding.step in ALL_STEPS, f"{kind.tasks[key]} has no step"


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/acme/site:1.0",  # a tag can move
        "acme/site",
        f"acme/site:latest@{DIGEST[:-1]}",
        f"Acme/site@{DIGEST}",
        f"acme/site@sha256:{'A' * 64}",
        f"acme/site@md5:{'a' * 32}",
        f"acme/site @{DIGEST}",
    ],
)
def test_a_release_refuses_an_image_not_pinned_by_digest(image: str) -> None:
    with pytest.raises(ValidationError):
        ReleaseFields(image=image, git_ref="main")


@pytest.mark.parametrize(
    "image", [IMAGE, f"acme/site@{DIGEST}", f"localhost:5000/site@{DIGEST}", f"site@{DIGEST}"]
)
def test_a_release_takes_an_image_pinned_by_digest(image: str) -> None:
    assert ReleaseFields(image=image, git_ref="main").image == image


@pytest.mark.parametrize(
    "fields",
    [
        {"replicas": 0},
        {"replicas": 51},
        {"storage_size": "5G"},
        {"storage_size": "0Gi"},
        {"storage_size": "5 Gi"},
        {"tier": "staging"},
        {"database_engine": "sqlite"},
        {"hostnames": ["localhost"]},
    ],
)
def test_an_environment_refuses_what_kubernetes_would(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EnvironmentFields.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"cli_container": "CLI"},
        {"cli_container": "-cli"},
        {"env": {"1ABC": "x"}},
        {"env": {"A-B": "x"}},
        {"env": {"A": "line\nbreak"}},
        {"web_port": 0},
    ],
)
def test_a_project_refuses_bad_names_and_values(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProjectFields.model_validate({"git_url": "https://git.example.com/a.git", **fields})


def test_a_ca_certificate_pasted_on_one_line_is_rewrapped() -> None:
    pasted = f"-----BEGIN CERTIFICATE----- {CERT_BODY} -----END CERTIFICATE-----"
    fields = ClusterFields.model_validate(
        {"api_url": "https://k8s.example.com", "ca_certificate": pasted}
    )
    assert fields.ca_certificate == (
        f"-----BEGIN CERTIFICATE-----\n{CERT_BODY[:64]}\n{CERT_BODY[64:]}\n"
        "-----END CERTIFICATE-----\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
        f"-----BEGIN CERTIFICATE-----\n{CERT_BODY}\n-----END CERTIFICATE-----\nextra",
    ],
)
def test_a_ca_certificate_must_be_pem(text: str) -> None:
    with pytest.raises(ValidationError):
        ClusterFields.model_validate({"api_url": "https://k8s.example.com", "ca_certificate": text})


async def test_creating_an_environment_builds_its_operations_and_tasks(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    environment = (await make_kubernetes_graph(client))["environment"]
    assert [op["type"] for op in environment["operations"]] == [
        "install", "verify", "deploy", "rollback", "promote", "scale", "backup", "restore",
        "run_command", "disable", "enable", "delete",
    ]  # fmt: skip
    keys = await session.scalars(
        select(TaskInstance.key).where(TaskInstance.entity_id == uuid.UUID(environment["id"]))
    )
    # One row per distinct key: backup and restore share the archive, as on sites.
    assert sorted(keys) == sorted(build_catalog(plugins=False).kinds["environment"].tasks)


async def test_an_environment_name_must_fit_its_namespace(client: httpx.AsyncClient) -> None:
    graph = await make_kubernetes_graph(client)
    references = {role: graph[role]["id"] for role in ("project", "cluster", "release")}
    for name in ("Acme", "a" * 58, "acme_prod"):
        response = await client.post(
            "/api/v1/environments", json={"name": name, "references": references}
        )
        assert response.status_code == 422, name


async def test_a_release_needs_its_project(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/releases", json={"name": "r1", "fields": {"image": IMAGE, "git_ref": "main"}}
    )
    assert response.status_code == 422
