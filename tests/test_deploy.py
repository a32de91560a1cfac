"""The control plane's own deployment files (deploy/): Kubernetes manifests that the API
server would accept, and compose, systemd and container files whose processes and
settings are the ones this code has. Nothing is built or started here (no Docker daemon
or cluster on the test machine): the Kubernetes objects are checked against the 1.37 API
schemas with kubernetes-validate, the rest against the code."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with ansible-core, without stubs

from app.cli import cli
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
PROCESSES = {"serve", "worker", "relay", "migrate"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in KUBERNETES
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def _settings_names() -> set[str]:
    return {f"AEGIR_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize(("name", "document"), _documents(), ids=lambda v: str(v)[:40])
def test_every_kubernetes_object_is_valid_for_the_1_37_api(
    name: str, document: dict[str, Any]
) -> None:
    kubernetes_validate.validate(document, "1.37.0", strict=True)
    assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aegir", name


def test_the_kubernetes_processes_are_the_clis_and_read_only_known_settings() -> None:
    documents = [doc for _name, doc in _documents()]
    commands = {
        container["args"][0]
        for doc in documents
        if doc["kind"] in {"Deployment", "Job"} and doc["metadata"]["name"].startswith("aegir")
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert commands == PROCESSES
    config = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    secret = next(doc for doc in documents if doc["kind"] == "Secret")
    named = {*config["data"], *secret["stringData"]} - {"POSTGRES_PASSWORD"}
    assert named <= _settings_names(), named - _settings_names()


def test_compose_runs_each_process_after_the_migration_with_known_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "relay"} <= set(services)
    assert {services[name]["command"][0] for name in ("migrate", "api", "worker", "relay")} == (
        PROCESSES
    )
    for name in ("api", "worker", "relay"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    environment = services["api"]["environment"]
    assert set(environment) <= _settings_names()


def test_the_compose_settings_load_as_production_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["api"][
        "environment"
    ]
    for key, value in environment.items():
        value = re.sub(r"\$\{AEGIR_SECRET_KEY:\?[^}]*\}", "a-real-secret-" * 3, str(value))
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value))
    settings = Settings(_env_file=None)
    assert settings.env == "production"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.redis_embedded is False


def test_systemd_units_start_the_clis_processes_with_the_environment_file() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    commands = set()
    for path in units:
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.read_string(path.read_text())
        service = unit["Service"]
        assert service["EnvironmentFile"] == "/etc/aegir/aegir.env", path.name
        assert service["User"] == "aegir", path.name
        program, command = service["ExecStart"].split()
        assert program == "/opt/aegir/.venv/bin/aegir", path.name
        commands.add(command)
    assert commands == PROCESSES
    example = (DEPLOY / "systemd" / "aegir.env.example").read_text()
    named = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line}
    named = {name for name in named if not name.startswith("#")}
    assert named <= _settings_names(), named - _settings_names()


def test_the_cli_has_every_command_the_deployments_start() -> None:
    import typer.main

    group = typer.main.get_command(cli)
    assert set(group.list_commands(None)) >= PROCESSES  # type: ignore[attr-defined]


def test_the_container_copies_what_exists_and_runs_the_cli() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["tini", "--", "aegir"]' in text
    assert 'CMD ["serve"]' in text
    named = set(re.findall(r"(AEGIR_[A-Z_]+)=", text))
    assert named and named <= _settings_names(), named - _settings_names()
