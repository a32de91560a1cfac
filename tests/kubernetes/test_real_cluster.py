"""install -> deploy -> login -> backup -> rollback -> delete on a real cluster.

Runs when ``AEGIR_TEST_KUBECONFIG`` names a kubeconfig whose current context has a
bearer token (a service account's, bound as the README says), and ``AEGIR_TEST_IMAGES``
names two images of a Drupal application by digest (comma-separated), with drush in
them; skipped otherwise, with the reason in the summary. Nothing here runs against
kmock: these tests are the check of what kmock cannot emulate.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with ansible-core, without stubs

from executors import executor_for
from tests.catalog.samples import entity
from tests.kubernetes.conftest import Contexts, Recorder

pytestmark = pytest.mark.kubernetes

KUBECONFIG = os.environ.get("AEGIR_TEST_KUBECONFIG")
IMAGES = [i for i in os.environ.get("AEGIR_TEST_IMAGES", "").split(",") if i]


def _cluster(kubeconfig: Path) -> tuple[dict[str, Any], str]:
    """The cluster's fields, and its token (sent as the credentials task's secret)."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    token = user["user"].get("token")
    if not token:
        pytest.skip("the kubeconfig's user has no bearer token (exec plugins are not read)")
    fields = {"api_url": cluster["cluster"]["server"]}
    if "certificate-authority-data" in cluster["cluster"]:
        ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode()
        fields["ca_certificate"] = ca
    return fields, token


@pytest.fixture
def real() -> Contexts:
    if not KUBECONFIG:
        pytest.skip("no real cluster: set AEGIR_TEST_KUBECONFIG (see README, Kubernetes)")
    if len(IMAGES) < 2:
        pytest.skip("AEGIR_TEST_IMAGES must name two application images by digest")
    from app.catalog.registry import build_catalog

    fields, token = _cluster(Path(KUBECONFIG))
    return Contexts(build_catalog(plugins=False), fields, {"token": token})


async def _step(real: Contexts, key: str, plain: dict[str, Any], **kwargs: Any) -> Recorder:
    context = real.make(key, plain, timeout=600, **kwargs)
    recorder = Recorder()
    task_type = real.catalog.tasks[context.task_type]
    code = await executor_for(task_type).run(context, recorder, asyncio.Event())
    assert code == 0, recorder.text()
    return recorder


async def test_an_environment_from_install_to_delete(real: Contexts) -> None:
    first, second = IMAGES[:2]
    project = entity("project", "aegir-test", {"git_url": "https://example.com/app.git"})
    releases = [
        entity("release", f"r{n}", {"image": image, "git_ref": "main"}, project=project)
        for n, image in enumerate((first, second))
    ]
    plain = entity(
        "environment", "aegir-test", {"tier": "development"},
        project=project, cluster=real.cluster_entity("real"), release=releases[0],
    )  # fmt: skip
    values = {"database": {"db_password": "a-test-db-password"},
              "install": {"admin_password": "a-test-admin-password"}}  # fmt: skip
    try:
        for key in ("namespace", "database", "application", "install", "verify"):
            await _step(real, key, plain, values=values)
        deploy = await _step(
            real, "deploy", plain, values={"deploy": {"release": "r1"}},
            refs={"deploy": {"release": releases[1]}},
        )  # fmt: skip
        login = await _step(real, "login", plain)
        assert login.outputs["url"].startswith("http")
        await _step(real, "backup_archive", plain)
        await _step(real, "rollback", plain, outputs={"deploy": deploy.outputs})
    finally:
        await _step(real, "delete", plain)
