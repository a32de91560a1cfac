"""The manifest builders: one test per field that changes a manifest, each manifest
validated by kubernetes-validate (strict) against the Kubernetes version below."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from pydantic import SecretStr, ValidationError

from executors.kubernetes import manifests
from executors.kubernetes.manifests import EnvironmentSpec, JobSpec, Manifest
from executors.kubernetes.spec import environment_spec
from tests.kubernetes.samples import IMAGE, environment, typed

# The oldest minor version the builders are checked against (supported upstream until
# late 2026); every API they use is GA there.
KUBERNETES_VERSION = "1.33.0"
RUN_ID = str(uuid.UUID(int=7))
PASSWORD = SecretStr("s3cret-database-password")


def validated(found: list[Manifest]) -> list[Manifest]:
    for manifest in found:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return found


def spec_of(fields: dict[str, Any] | None = None, **kwargs: Any) -> EnvironmentSpec:
    project_fields = kwargs.pop("project_fields", None)
    cluster_fields = kwargs.pop("cluster_fields", None)
    plain = environment(fields, project_fields=project_fields, cluster_fields=cluster_fields)
    return environment_spec(typed(plain), RUN_ID, **kwargs)


def everything(spec: EnvironmentSpec) -> list[Manifest]:
    job = JobSpec(
        name=manifests.job_name("install", RUN_ID, 1),
        namespace=spec.namespace,
        labels=manifests.labels(spec),
        task="install",
        image=spec.image,
        container=spec.cli_container,
        command=["drush", "site:install"],
        deadline=1800,
    )
    backup = job.model_copy(update={"name": "backup-x-1", "backups": True})
    return validated(
        [
            manifests.namespace(spec),
            *manifests.database(spec, PASSWORD),
            *manifests.environment(spec),
            manifests.job(job, spec),
            manifests.backups_claim(spec),
            manifests.job(backup, spec),
            manifests.task_secret(spec, "install-1", PASSWORD),
        ]
    )


def one(found: list[Manifest], kind: str, name: str = manifests.APP) -> Manifest:
    [match] = [m for m in found if m["kind"] == kind and m["metadata"]["name"] == name]
    return match


def containers(found: list[Manifest]) -> dict[str, dict[str, Any]]:
    pod = one(found, "Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def test_every_object_is_labelled_with_the_environment_and_the_run() -> None:
    for manifest in everything(spec_of()):
        labels = manifest["metadata"]["labels"]
        assert labels[manifests.ENVIRONMENT_LABEL] == "acme-prod", manifest["kind"]
        assert labels[manifests.RUN_LABEL] == RUN_ID, manifest["kind"]
        assert labels[manifests.MANAGED_BY] == "aegir"


def test_pod_templates_do_not_change_with_the_run() -> None:
    first = manifests.deployment(spec_of())
    again = manifests.deployment(environment_spec(typed(environment()), str(uuid.uuid4())))
    assert first["spec"]["template"] == again["spec"]["template"]


def test_objects_live_in_the_environments_namespace() -> None:
    found = everything(spec_of())
    assert found[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "aegir-acme-prod", "labels": found[0]["metadata"]["labels"]},
    }
    assert {m["metadata"]["namespace"] for m in found[1:]} == {"aegir-acme-prod"}


def test_the_release_image_runs_in_every_application_container() -> None:
    assert {c["image"] for c in containers(everything(spec_of())).values()} == {IMAGE}


def test_replicas() -> None:
    assert one(everything(spec_of({"replicas": 3})), "Deployment")["spec"]["replicas"] == 3


def test_a_scale_overrides_the_replicas() -> None:
    spec = spec_of({"replicas": 3}, replicas=0)
    assert one(everything(spec), "Deployment")["spec"]["replicas"] == 0


def test_hostnames_become_ingress_rules() -> None:
    spec = spec_of({"hostnames": ["a.example.com", "b.example.com"]})
    rules = one(everything(spec), "Ingress")["spec"]["rules"]
    assert [rule["host"] for rule in rules] == ["a.example.com", "b.example.com"]
    backends = {p["backend"]["service"]["name"] for r in rules for p in r["http"]["paths"]}
    assert backends == {manifests.APP}


def test_no_hostnames_no_ingress() -> None:
    assert "Ingress" not in {m["kind"] for m in everything(spec_of({"hostnames": []}))}


def test_ingress_class() -> None:
    spec = spec_of(cluster_fields={"ingress_class": "traefik"})
    assert one(everything(spec), "Ingress")["spec"]["ingressClassName"] == "traefik"


def test_storage_class_and_size() -> None:
    spec = spec_of({"storage_size": "20Gi"}, cluster_fields={"storage_class": "fast-ssd"})
    found = everything(spec)
    claims = [
        one(found, "PersistentVolumeClaim", manifests.FILES)["spec"],
        one(found, "StatefulSet", manifests.DATABASE)["spec"]["volumeClaimTemplates"][0]["spec"],
    ]
    for claim in claims:
        assert claim["storageClassName"] == "fast-ssd"
        assert claim["resources"]["requests"]["storage"] == "20Gi"


def test_a_backups_claim_binds_the_volume_kept_from_an_earlier_install() -> None:
    kept = {"metadata": {"name": "pvc-1234"}, "spec": {"storageClassName": "slow"}}
    [claim] = validated([manifests.backups_claim(spec_of(), kept)])
    assert (claim["metadata"]["name"], claim["metadata"]["namespace"]) == (
        "backups",
        "aegir-acme-prod",
    )
    assert claim["spec"]["volumeName"] == "pvc-1234"
    assert claim["spec"]["storageClassName"] == "slow"  # a claim binds its own class only
    new = manifests.backups_claim(spec_of())["spec"]
    assert "volumeName" not in new and "storageClassName" not in new


def test_no_storage_class_takes_the_clusters_default() -> None:
    claim = one(everything(spec_of()), "PersistentVolumeClaim", manifests.FILES)["spec"]
    assert "storageClassName" not in claim


@pytest.mark.parametrize(
    ("engine", "image", "port"),
    [("mariadb", "mariadb", 3306), ("postgresql", "postgres", 5432)],
)
def test_database_engine(engine: str, image: str, port: int) -> None:
    found = everything(spec_of({"database_engine": engine}))
    [server] = one(found, "StatefulSet", manifests.DATABASE)["spec"]["template"]["spec"][
        "containers"
    ]
    assert image in server["image"]
    assert server["ports"] == [{"name": "db", "containerPort": port}]
    env = {e["name"]: e for e in containers(found)["web"]["env"]}
    assert env["DB_PORT"]["value"] == str(port)
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": manifests.DATABASE,
        "key": "password",
    }


def test_web_port() -> None:
    found = everything(spec_of(project_fields={"web_port": 8888}))
    web = containers(found)["web"]
    assert web["ports"] == [{"name": "http", "containerPort": 8888}]
    assert web["readinessProbe"]["tcpSocket"]["port"] == 8888
    assert one(found, "Service")["spec"]["ports"][0]["targetPort"] == 8888


def test_cli_container() -> None:
    found = everything(spec_of(project_fields={"cli_container": "php-cli"}))
    assert set(containers(found)) == {"web", "php-cli"}
    assert (
        one(found, "Job", manifests.job_name("install", RUN_ID, 1))["spec"]["template"]["spec"][
            "containers"
        ][0]["name"]
        == "php-cli"
    )


def test_project_variables_reach_every_application_container() -> None:
    found = everything(spec_of(project_fields={"env": {"APP_ENV": "prod", "DEBUG": "0"}}))
    for container in containers(found).values():
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["APP_ENV"] == "prod" and env["DEBUG"] == "0"


def test_a_rollback_applies_the_stored_variables() -> None:
    spec = spec_of(project_fields={"env": {"A": "new"}}, env={"A": "old"})
    assert {"name": "A", "value": "old"} in containers(everything(spec))["web"]["env"]


def test_disabled_scales_to_zero_and_serves_the_maintenance_page() -> None:
    found = everything(spec_of({"replicas": 2}, disabled=True))
    assert one(found, "Deployment")["spec"]["replicas"] == 0
    rule = one(found, "Ingress")["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == manifests.MAINTENANCE
    page = one(found, "ConfigMap", manifests.MAINTENANCE)["data"]["index.html"]
    assert "maintenance" in page
    assert (
        one(found, "Service", manifests.MAINTENANCE)["spec"]["selector"][manifests.COMPONENT_LABEL]
        == manifests.MAINTENANCE
    )


def test_enabled_has_no_maintenance_objects() -> None:
    names = {m["metadata"]["name"] for m in everything(spec_of())}
    assert manifests.MAINTENANCE not in names


def test_the_progress_deadline_follows_the_task_timeout() -> None:
    assert (
        one(everything(spec_of(timeout=90)), "Deployment")["spec"]["progressDeadlineSeconds"] == 90
    )


def test_a_job_runs_once_until_the_tasks_timeout_and_is_collected() -> None:
    job = one(everything(spec_of()), "Job", manifests.job_name("install", RUN_ID, 1))
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["labels"][manifests.JOB_TASK_LABEL] == "install"


def test_a_job_without_an_environment_runs_the_bare_image() -> None:
    spec = JobSpec(
        name="verify-x-1",
        namespace="aegir-system",
        labels={manifests.MANAGED_BY: "aegir"},
        task="verify",
        image=IMAGE,
        container="pull",
        command=["true"],
        deadline=60,
    )
    [job] = validated([manifests.job(spec)])
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container == {"name": "pull", "image": IMAGE, "command": ["true"]}


def test_job_names_are_the_same_for_a_rerun_and_differ_by_attempt() -> None:
    run = str(uuid.uuid4())
    name = manifests.job_name("install_cleanup_with_a_long_key", run, 12)
    assert name == manifests.job_name("install_cleanup_with_a_long_key", run, 12)
    assert name != manifests.job_name("install_cleanup_with_a_long_key", run, 13)
    JobSpec(name=name, namespace="n", labels={}, task="t", image=IMAGE, container="c",
            command=["true"], deadline=1)  # fmt: skip


def test_no_secret_outside_a_secret() -> None:
    found = everything(spec_of())
    secrets = [m for m in found if m["kind"] == "Secret"]
    assert [next(iter(s["stringData"].values())) for s in secrets] == [
        PASSWORD.get_secret_value()
    ] * 2
    others = json.dumps([m for m in found if m["kind"] != "Secret"])
    assert PASSWORD.get_secret_value() not in others


def _invalid_specs() -> Iterator[dict[str, Any]]:
    base = spec_of().model_dump()
    yield {**base, "cli_container": "CLI"}
    yield {**base, "namespace": "aegir_acme"}
    yield {**base, "run_id": "not a label value"}
    yield {**base, "image": "acme/site:latest"}
    yield {**base, "storage_size": "5GB"}
    yield {**base, "ingress_class": "Nginx"}
    yield {**base, "database_engine": "mysql"}
    yield {**base, "env": {"BAD-NAME": "x"}}


@pytest.mark.parametrize("data", list(_invalid_specs()))
def test_names_and_enum_values_kubernetes_would_refuse_are_refused_first(
    data: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        EnvironmentSpec.model_validate(data)
