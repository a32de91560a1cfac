"""An environment's manifests: pure functions of its typed fields, no text templates.

Every builder takes an ``EnvironmentSpec`` (or a ``JobSpec``), whose fields are the
catalogue's validating types: a name, an image reference, a quantity or an enum value
that Kubernetes would refuse is refused when the spec is built, before anything is sent.
Every object carries the environment's labels and the run's; the pod template carries
the environment's only (a run label there would restart every pod at each apply).
Secrets (the database password) are written only into the ``Secret`` built here; other
objects refer to it by ``secretKeyRef``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from app.catalog.builtin.kubernetes.fields import (
    DnsLabel,
    DnsSubdomain,
    EnvName,
    EnvValue,
    ImageDigest,
    Quantity,
)
from app.catalog.fields import DomainName, Port

Manifest = dict[str, Any]

MANAGED_BY = "app.kubernetes.io/managed-by"
ENVIRONMENT_LABEL = "aegir.io/environment"
RUN_LABEL = "aegir.io/run"
COMPONENT_LABEL = "app.kubernetes.io/component"
JOB_TASK_LABEL = "aegir.io/task"

APP = "app"
DATABASE = "database"
MAINTENANCE = "maintenance"
FILES = "files"
WEB_CONTAINER = "web"
FILES_MOUNT = "/var/aegir/files"
BACKUPS = "backups"
BACKUPS_MOUNT = "/var/aegir/backups"

LabelValue = Annotated[
    str,
    StringConstraints(max_length=63, pattern=r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?$"),
]

LabelKey = Annotated[
    str,
    StringConstraints(
        max_length=317,
        pattern=r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$",
    ),
]

# Database servers by engine: image, port, data directory, and the variables their
# official images read (the password comes from the Secret, never from here).
DATABASES: dict[str, tuple[str, int, str, dict[str, str]]] = {
    "mariadb": (
        "docker.io/library/mariadb:11.4",
        3306,
        "/var/lib/mysql",
        {"MARIADB_DATABASE": "app", "MARIADB_USER": "app"},
    ),
    "postgresql": (
        "docker.io/library/postgres:16",
        5432,
        "/var/lib/postgresql/data",
        {"POSTGRES_DB": "app", "POSTGRES_USER": "app", "PGDATA": "/var/lib/postgresql/data/pg"},
    ),
}
DATABASE_PASSWORD_VARIABLE = {"mariadb": "MARIADB_PASSWORD", "postgresql": "POSTGRES_PASSWORD"}
MAINTENANCE_IMAGE = "docker.io/library/nginx:1.27-alpine"


class EnvironmentSpec(BaseModel):
    """What an environment's manifests are built from, every field checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: DnsLabel
    namespace: DnsLabel
    run_id: LabelValue
    project: LabelValue
    release: LabelValue
    image: ImageDigest
    web_port: Port
    cli_container: DnsLabel
    env: dict[EnvName, EnvValue] = {}
    replicas: int = Field(ge=0, le=50)
    hostnames: list[DomainName] = []
    ingress_class: DnsSubdomain
    storage_class: DnsSubdomain | None = None
    storage_size: Quantity
    database_engine: Literal["mariadb", "postgresql"]
    # Disabled: the application at 0 replicas, the Ingress on the maintenance page.
    disabled: bool = False
    # kubectl's ProgressDeadlineExceeded comes after this many seconds without progress.
    progress_deadline: int = Field(default=600, ge=1)


class JobSpec(BaseModel):
    """A Job of a task: named from run, task and attempt, so a re-run finds its Job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: DnsLabel
    namespace: DnsLabel
    labels: dict[LabelKey, LabelValue]
    task: LabelValue
    image: ImageDigest
    container: DnsLabel
    command: list[str] = Field(min_length=1)
    deadline: int = Field(ge=1, description="activeDeadlineSeconds: the task's timeout.")
    # Variables read from a Secret of the namespace (key ``value``), e.g. an admin
    # password that the command takes as ``$(ADMIN_PASSWORD)``: never in the Job itself.
    secret_env: dict[EnvName, DnsSubdomain] = {}
    # Mount the environment's backups volume at BACKUPS_MOUNT (backup and restore Jobs).
    backups: bool = False
    ttl: int = Field(default=3600, ge=0, description="ttlSecondsAfterFinished.")
    restart_policy: Literal["Never"] = "Never"


def job_name(task: str, run_id: str, attempt: int) -> str:
    """``TASK-RUNHEX-ATTEMPT``: at most 20 + 1 + 32 + 1 + 4 characters, a DNS label."""
    task_part = task.replace("_", "-")[:20].strip("-")
    return f"{task_part}-{run_id.replace('-', '')}-{attempt}"


def labels(spec: EnvironmentSpec, *, run: bool = True) -> dict[str, str]:
    found = {MANAGED_BY: "aegir", ENVIRONMENT_LABEL: spec.environment}
    if run:
        found[RUN_LABEL] = spec.run_id
    return found


def selector(spec: EnvironmentSpec, component: str) -> dict[str, str]:
    return {ENVIRONMENT_LABEL: spec.environment, COMPONENT_LABEL: component}


def _meta(spec: EnvironmentSpec, name: str, component: str | None = None) -> dict[str, Any]:
    found = labels(spec)
    if component is not None:
        found[COMPONENT_LABEL] = component
    return {"name": name, "namespace": spec.namespace, "labels": found}


def namespace(spec: EnvironmentSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace, "labels": labels(spec)},
    }


def database_secret(spec: EnvironmentSpec, password: SecretStr) -> Manifest:
    """The one object that holds the database password."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, DATABASE, DATABASE),
        "type": "Opaque",
        "stringData": {"password": password.get_secret_value()},
    }


def task_secret(spec: EnvironmentSpec, name: str, value: SecretStr) -> Manifest:
    """A secret value a Job reads (``JobSpec.secret_env``), in a Secret of its own."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, name),
        "type": "Opaque",
        "stringData": {"value": value.get_secret_value()},
    }


def _password_from_secret(variable: str) -> dict[str, Any]:
    return {
        "name": variable,
        "valueFrom": {"secretKeyRef": {"name": DATABASE, "key": "password"}},
    }


def _volume_claim_spec(spec: EnvironmentSpec) -> dict[str, Any]:
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage_size}},
    }
    if spec.storage_class is not None:
        claim["storageClassName"] = spec.storage_class
    return claim


def database_service(spec: EnvironmentSpec) -> Manifest:
    _, port, _, _ = DATABASES[spec.database_engine]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, DATABASE, DATABASE),
        "spec": {
            "selector": selector(spec, DATABASE),
            "ports": [{"name": "db", "port": port, "targetPort": port}],
        },
    }


def database_statefulset(spec: EnvironmentSpec) -> Manifest:
    image, port, data_dir, variables = DATABASES[spec.database_engine]
    env = [{"name": name, "value": value} for name, value in variables.items()]
    env.append(_password_from_secret(DATABASE_PASSWORD_VARIABLE[spec.database_engine]))
    if spec.database_engine == "mariadb":
        env.append({"name": "MARIADB_RANDOM_ROOT_PASSWORD", "value": "1"})
    container = {
        "name": DATABASE,
        "image": image,
        "ports": [{"name": "db", "containerPort": port}],
        "env": env,
        "volumeMounts": [{"name": "data", "mountPath": data_dir}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(spec, DATABASE, DATABASE),
        "spec": {
            "serviceName": DATABASE,
            "replicas": 1,
            "selector": {"matchLabels": selector(spec, DATABASE)},
            "template": {
                "metadata": {"labels": {**labels(spec, run=False), **selector(spec, DATABASE)}},
                "spec": {"containers": [container]},
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": _volume_claim_spec(spec)}
            ],
        },
    }


def files_claim(spec: EnvironmentSpec, name: str = FILES) -> Manifest:
    """The files volume (or, named ``backups``, the backup archives' one, as large)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(spec, name, APP if name == FILES else name),
        "spec": _volume_claim_spec(spec),
    }


def backups_claim(spec: EnvironmentSpec, volume: Manifest | None = None) -> Manifest:
    """The backup archives' claim; bound to ``volume`` (a PersistentVolume kept from an
    earlier install of the environment) when there is one."""
    claim = files_claim(spec, BACKUPS)
    if volume is not None:
        claim["spec"]["volumeName"] = volume["metadata"]["name"]
        # A claim binds only a volume of its own class ("" for a volume of none).
        claim["spec"]["storageClassName"] = volume["spec"].get("storageClassName", "")
    return claim


def application_env(spec: EnvironmentSpec) -> list[dict[str, Any]]:
    """The project's variables, then the database's (its password from the Secret)."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    _, port, _, _ = DATABASES[spec.database_engine]
    env += [
        {"name": "DB_DRIVER", "value": "mysql" if spec.database_engine == "mariadb" else "pgsql"},
        {"name": "DB_HOST", "value": DATABASE},
        {"name": "DB_PORT", "value": str(port)},
        {"name": "DB_NAME", "value": "app"},
        {"name": "DB_USER", "value": "app"},
        _password_from_secret("DB_PASSWORD"),
    ]
    return env


def _app_container(spec: EnvironmentSpec, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": spec.image,
        "env": application_env(spec),
        "volumeMounts": [{"name": FILES, "mountPath": FILES_MOUNT}],
    }


def deployment(spec: EnvironmentSpec) -> Manifest:
    web = _app_container(spec, WEB_CONTAINER)
    web["ports"] = [{"name": "http", "containerPort": spec.web_port}]
    web["readinessProbe"] = {"tcpSocket": {"port": spec.web_port}, "periodSeconds": 5}
    # The CLI container stays up beside the web server: logins and commands exec there.
    cli = _app_container(spec, spec.cli_container)
    cli["command"] = ["sleep", "infinity"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, APP, APP),
        "spec": {
            "replicas": 0 if spec.disabled else spec.replicas,
            "progressDeadlineSeconds": spec.progress_deadline,
            "selector": {"matchLabels": selector(spec, APP)},
            "template": {
                "metadata": {"labels": {**labels(spec, run=False), **selector(spec, APP)}},
                "spec": {
                    "containers": [web, cli],
                    "volumes": [{"name": FILES, "persistentVolumeClaim": {"claimName": FILES}}],
                },
            },
        },
    }


def service(spec: EnvironmentSpec, component: str = APP, port: int | None = None) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, component, component),
        "spec": {
            "selector": selector(spec, component),
            "ports": [{"name": "http", "port": 80, "targetPort": port or spec.web_port}],
        },
    }


def ingress(spec: EnvironmentSpec) -> Manifest:
    """Its hostnames to the application, or to the maintenance page while disabled."""
    backend = MAINTENANCE if spec.disabled else APP
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": backend, "port": {"number": 80}}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(spec, APP, APP),
        "spec": {
            "ingressClassName": spec.ingress_class,
            "rules": [{"host": host, "http": {"paths": [path]}} for host in spec.hostnames],
        },
    }


MAINTENANCE_PAGE = (
    "<!doctype html><title>Maintenance</title>"
    "<h1>This site is under maintenance.</h1><p>Please come back soon.</p>\n"
)


def maintenance(spec: EnvironmentSpec) -> list[Manifest]:
    """A page served instead of the application while the environment is disabled."""
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, MAINTENANCE, MAINTENANCE),
        "data": {"index.html": MAINTENANCE_PAGE},
    }
    container = {
        "name": MAINTENANCE,
        "image": MAINTENANCE_IMAGE,
        "ports": [{"name": "http", "containerPort": 80}],
        "volumeMounts": [{"name": "page", "mountPath": "/usr/share/nginx/html"}],
    }
    server = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, MAINTENANCE, MAINTENANCE),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(spec, MAINTENANCE)},
            "template": {
                "metadata": {"labels": {**labels(spec, run=False), **selector(spec, MAINTENANCE)}},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "page", "configMap": {"name": MAINTENANCE}}],
                },
            },
        },
    }
    return [config, server, service(spec, MAINTENANCE, 80)]


def environment(spec: EnvironmentSpec) -> list[Manifest]:
    """Everything the application step applies, in order; what is absent gets pruned."""
    found = [
        files_claim(spec),
        deployment(spec),
        service(spec),
    ]
    if spec.hostnames:
        found.append(ingress(spec))
    if spec.disabled:
        found += maintenance(spec)
    return found


def database(spec: EnvironmentSpec, password: SecretStr) -> list[Manifest]:
    return [database_secret(spec, password), database_service(spec), database_statefulset(spec)]


def job(job_spec: JobSpec, spec: EnvironmentSpec | None = None) -> Manifest:
    """A Job that runs once (no retry), ends at the task's timeout, and is collected later.

    With an environment, its container is the application's (variables, files volume);
    without one (a release's pull check), the bare image in ``job_spec.namespace``.
    """
    container: dict[str, Any] = {"name": job_spec.container}
    pod: dict[str, Any] = {"restartPolicy": job_spec.restart_policy}
    if spec is not None:
        container = _app_container(spec, job_spec.container)
        pod["volumes"] = [{"name": FILES, "persistentVolumeClaim": {"claimName": FILES}}]
    if spec is not None and job_spec.backups:
        container["volumeMounts"].append({"name": BACKUPS, "mountPath": BACKUPS_MOUNT})
        pod["volumes"].append({"name": BACKUPS, "persistentVolumeClaim": {"claimName": BACKUPS}})
    container["image"] = job_spec.image
    container["command"] = list(job_spec.command)
    if job_spec.secret_env:
        container["env"] = container.get("env", []) + [
            {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": "value"}}}
            for name, secret in sorted(job_spec.secret_env.items())
        ]
    pod["containers"] = [container]
    job_labels = {**job_spec.labels, JOB_TASK_LABEL: job_spec.task}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_spec.name, "namespace": job_spec.namespace, "labels": job_labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": job_spec.deadline,
            "ttlSecondsAfterFinished": job_spec.ttl,
            "template": {"metadata": {"labels": job_labels}, "spec": pod},
        },
    }
