"""The built-in kinds of the Kubernetes back-end: clusters, projects, releases, environments.

A Project is an application's codebase; a Release is a built image of it (where a
Platform is a codebase on a server); an Environment is a Release running on a Cluster
(where a Site runs on a Platform). Their tasks run in ``executors/kubernetes``.
"""

from __future__ import annotations

from datetime import timedelta

from app.catalog.builtin.kubernetes.fields import (
    ClusterFields,
    EnvironmentFields,
    EnvironmentName,
    ProjectFields,
    ReleaseFields,
)
from app.catalog.builtin.kubernetes.tasks import TASKS, LoginResult, LogsResult
from app.catalog.fields import Slug
from app.catalog.registry import Catalog
from app.catalog.types import (
    ActionType,
    EntityKind,
    OnSuccess,
    OperationType,
    Reference,
    Summary,
)

__all__ = ["register"]

LIVE = ("enabled", "disabled")

ENVIRONMENT_TASKS = {
    "namespace": "environment_namespace",
    "database": "environment_database",
    "application": "environment_application",
    "install": "environment_install",
    "verify": "environment_verify",
    "deploy_backup": "environment_deploy_backup",
    "deploy": "environment_deploy",
    "rollback": "environment_rollback",
    "promote": "environment_promote",
    "scale": "environment_scale",
    "backup_archive": "environment_backup",
    "safety_backup": "environment_backup",
    "restore": "environment_restore",
    "run_command": "environment_run_command",
    "disable": "environment_disable",
    "enable": "environment_enable",
    "delete": "environment_delete",
    "install_cleanup": "environment_install_cleanup",
    "login": "environment_login",
    "logs": "environment_logs",
}

ENVIRONMENT_OPERATIONS = (
    OperationType(
        "install",
        "Install",
        steps=("namespace", "database", "application", "install", "verify"),
        on_success=OnSuccess(state="enabled"),
        on_failure=("install_cleanup",),
        description="Namespace, database, application, the install Job, then a check; a "
        "failed install deletes what it created.",
    ),
    OperationType("verify", "Verify", steps=("verify",), requires_state=LIVE),
    OperationType(
        "deploy",
        "Deploy",
        steps=("deploy_backup", "deploy"),
        requires_state=LIVE,
        on_success=OnSuccess(repoint=("release", "deploy", "release")),
        description="Deploys a release (production is backed up first); a failed rollout "
        "re-applies the previous release.",
    ),
    OperationType(
        "rollback",
        "Roll back",
        # No ``reads``: it needs the deploy's outputs, not its values (a promoted
        # environment has none to validate); every task's outputs reach the executor.
        steps=("rollback",),
        requires_state=LIVE,
        on_success=OnSuccess(repoint_output=("release", "rollback", "release")),
        description="Re-applies the release the last deploy replaced, image and configuration.",
    ),
    OperationType(
        "promote",
        "Promote",
        steps=("deploy_backup", "promote"),
        requires_state=LIVE,
        on_success=OnSuccess(repoint_output=("release", "promote", "release")),
        description="Deploys what another environment runs, without a rebuild.",
    ),
    OperationType("scale", "Scale", steps=("scale",), requires_state=("enabled",)),
    OperationType("backup", "Back up", steps=("backup_archive",), requires_state=LIVE),
    OperationType(
        "restore",
        "Restore",
        steps=("safety_backup", "restore"),
        reads=("backup_archive",),
        destructive=True,
        requires_state=LIVE,
        description="Takes a backup of the current state, then restores the archive.",
    ),
    OperationType("run_command", "Run a command", steps=("run_command",), requires_state=LIVE),
    OperationType(
        "disable",
        "Disable",
        steps=("disable",),
        requires_state=("enabled",),
        on_success=OnSuccess(state="disabled"),
        description="Scales to 0 and serves a maintenance page.",
    ),
    OperationType(
        "enable",
        "Enable",
        steps=("enable",),
        requires_state=("disabled",),
        on_success=OnSuccess(state="enabled"),
    ),
    OperationType(
        "delete",
        "Delete",
        steps=("backup_archive", "delete"),
        destructive=True,
        requires_state=LIVE,
        on_success=OnSuccess(state="deleted"),
        description="Backs up, then deletes the namespace and waits until it is gone.",
    ),
)

ENVIRONMENT_ACTIONS = (
    ActionType(
        "login",
        "Log in",
        task="login",
        result=LoginResult,
        # An exec answers in about a second; the fallback Job needs a pod to start.
        timeout=timedelta(seconds=20),
        description="A one-time login link (drush uli in the CLI container).",
    ),
    ActionType(
        "logs",
        "Logs",
        task="logs",
        result=LogsResult,
        timeout=timedelta(seconds=10),
        description="The last lines of the application's pods.",
    ),
)


RELEASE_TASKS = ("deploy", "rollback", "promote")

# The environment's page: what its last verify or scale saw, what runs, what ran before.
ENVIRONMENT_SUMMARIES = (
    Summary(
        "Ready replicas (last observed)",
        (("verify", "ready_replicas"), ("scale", "ready_replicas")),
        at="observed_at",
    ),
    Summary("Release applied", tuple((key, "release") for key in RELEASE_TASKS), at="applied_at"),
    Summary("Image applied", tuple((key, "image") for key in RELEASE_TASKS), at="applied_at"),
    Summary(
        "Deploys",
        tuple((key, "history") for key in RELEASE_TASKS),
        at="applied_at",
        columns=("at", "by", "release", "image", "run"),
    ),
)


def _cluster() -> EntityKind:
    return EntityKind(
        name="cluster",
        label="Cluster",
        plural="clusters",
        fields=ClusterFields,
        name_type=Slug,
        tasks={"verify": "cluster_verify", "credentials": "cluster_credentials"},
        operations={
            "verify": OperationType(
                "verify",
                "Verify",
                steps=("verify",),
                reads=("credentials",),
                description="Checks the server answers and what Aegir may do; a token sent "
                "here is kept (encrypted) for every task on the cluster.",
            )
        },
        credentials="credentials",
        description="A Kubernetes cluster that environments run on.",
    )


def _project() -> EntityKind:
    return EntityKind(
        name="project",
        label="Project",
        plural="projects",
        fields=ProjectFields,
        name_type=Slug,
        description="An application's codebase: a git repository, built into releases.",
    )


def _release() -> EntityKind:
    return EntityKind(
        name="release",
        label="Release",
        plural="releases",
        fields=ReleaseFields,
        name_type=Slug,
        references={"project": Reference("project", description="What it is a build of.")},
        tasks={"verify": "release_verify"},
        operations={"verify": OperationType("verify", "Verify", steps=("verify",))},
        description="A built image of a project, pinned by digest.",
    )


def _environment() -> EntityKind:
    return EntityKind(
        name="environment",
        label="Environment",
        plural="environments",
        fields=EnvironmentFields,
        name_type=EnvironmentName,
        references={
            "project": Reference("project", description="The application it runs."),
            "cluster": Reference("cluster", description="Where it runs."),
            "release": Reference("release", description="The release it runs now."),
        },
        tasks=dict(ENVIRONMENT_TASKS),
        operations={op.name: op for op in ENVIRONMENT_OPERATIONS},
        actions={action.name: action for action in ENVIRONMENT_ACTIONS},
        summaries=ENVIRONMENT_SUMMARIES,
        description="A release of a project running on a cluster: dev, stage, prod.",
    )


def register(catalog: Catalog) -> None:
    catalog.add_task(*TASKS)
    for kind in (_cluster(), _project(), _release(), _environment()):
        catalog.add_kind(kind)
