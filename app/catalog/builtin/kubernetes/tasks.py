"""The Kubernetes kinds' task types: their values, their outputs and their back-end step."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl, StringConstraints

from app.catalog.builtin.kubernetes.fields import (
    ClusterToken,
    DnsSubdomain,
    EnvironmentName,
    EnvName,
    EnvValue,
    ImageDigest,
)
from app.catalog.fields import Email, Label, SafeRelativePath, Secret, Slug
from app.catalog.types import (
    Generated,
    KubernetesStep,
    NoFields,
    RefersTo,
    TaskFields,
    TaskType,
)

CommandArgument = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="One argument, passed as it is (no shell)."),
]


class CredentialsFields(TaskFields):
    token: ClusterToken | None = Field(
        default=None,
        description="The service account's bearer token (encrypted at rest, never shown, "
        "masked in logs); kept until you send another.",
    )


class ClusterVerifyOutputs(TaskFields):
    server_version: Label | None = None
    # "verb resource" pairs Aegir needs and the self-subject rules review did not grant.
    missing_permissions: list[Label] = []


class ReleaseVerifyFields(TaskFields):
    cluster: Annotated[Slug, RefersTo("cluster")] = Field(
        description="The cluster that must be able to pull the image."
    )


class ReleaseVerifyOutputs(TaskFields):
    pullable: bool | None = None


class DatabaseFields(TaskFields):
    db_password: Annotated[Secret | None, Generated()] = Field(
        default=None, description="The database password; generated when empty."
    )


class InstallFields(TaskFields):
    profile: Slug = Field(default="standard", description="Install profile (Drupal).")
    site_name: Label = Field(default="My site", description="The site's title.")
    admin_email: Email = Field(default="admin@example.com", description="The first admin's e-mail.")
    admin_password: Annotated[Secret | None, Generated()] = Field(
        default=None, description="The first admin's password; generated when empty."
    )


class DeployFields(TaskFields):
    release: Annotated[Slug, RefersTo("release")] = Field(
        description="The release to deploy (of the environment's project)."
    )


HISTORY = 20  # deploys kept in ``DeployOutputs.history``


class Deployed(BaseModel):
    """One release applied to an environment, by a deploy, a rollback or a promote."""

    at: datetime
    by: Literal["deploy", "rollback", "promote"]
    release: Slug
    image: ImageDigest
    run: str = Field(max_length=36)


class DeployOutputs(TaskFields):
    """What a deploy (a rollback, a promote) applied and what it replaced: a rollback's
    whole input; the newest of the three tasks' outputs (``applied_at``) is the current.
    ``history``: the environment's last deploys, newest first, whichever task ran them."""

    release: Slug | None = None
    image: ImageDigest | None = None
    env: dict[EnvName, EnvValue] | None = None
    previous_release: Slug | None = None
    previous_image: ImageDigest | None = None
    previous_env: dict[EnvName, EnvValue] | None = None
    applied_at: datetime | None = None
    history: list[Deployed] = Field(default=[], max_length=HISTORY)


class PromoteFields(TaskFields):
    source: Annotated[EnvironmentName, RefersTo("environment")] = Field(
        description="The environment whose release this one runs next (no rebuild)."
    )


class ScaleFields(TaskFields):
    replicas: int = Field(ge=0, le=50, description="Application pods.")


class ObservedOutputs(TaskFields):
    ready_replicas: int | None = None
    observed_at: datetime | None = None


class BackupFields(TaskFields):
    description: Label | None = Field(default=None, description="Why this backup was taken.")
    path: SafeRelativePath | None = Field(
        default=None,
        description="Archive to restore, in the environment's backup volume; the latest "
        "backup writes it.",
    )


class BackupOutputs(TaskFields):
    path: SafeRelativePath | None = None
    # The PersistentVolume the archives are on: kept when the namespace is deleted.
    volume: DnsSubdomain | None = None
    size_bytes: int | None = None
    taken_at: datetime | None = None


class RunCommandFields(TaskFields):
    command: list[CommandArgument] = Field(
        min_length=1, max_length=64, description="The command and its arguments, one a line."
    )


class LoginOutputs(TaskFields):
    url: HttpUrl | None = None


class LoginResult(BaseModel):
    url: HttpUrl = Field(description="A one-time login link.")


class LogsFields(TaskFields):
    lines: int = Field(default=100, ge=1, le=1000, description="How many lines, per pod.")


class LogsOutputs(TaskFields):
    lines: list[str] = []


class LogsResult(BaseModel):
    lines: list[str] = Field(description="The last lines of the application's pods.")


def _task(
    name: str,
    label: str,
    description: str,
    *,
    fields: type[TaskFields] = NoFields,
    outputs: type[TaskFields] = NoFields,
    safe_to_rerun: bool = False,
    timeout: timedelta = timedelta(minutes=30),
) -> TaskType:
    """A task type run by the Kubernetes back-end's step of the same name."""
    return TaskType(
        name,
        label,
        fields,
        outputs,
        executor=KubernetesStep(name),
        safe_to_rerun=safe_to_rerun,
        timeout=timeout,
        description=description,
    )


TASKS = (
    _task(
        "cluster_credentials",
        "Credentials",
        "What Aegir signs in to the cluster with: read by every task on it, never run.",
        fields=CredentialsFields,
        safe_to_rerun=True,
    ),
    _task(
        "cluster_verify",
        "Verify cluster",
        "Reads the server's version and reviews what Aegir may do there.",
        outputs=ClusterVerifyOutputs,
        safe_to_rerun=True,
        timeout=timedelta(minutes=2),
    ),
    _task(
        "release_verify",
        "Verify release",
        "Pulls the image in a tiny Job on a cluster.",
        fields=ReleaseVerifyFields,
        outputs=ReleaseVerifyOutputs,
        safe_to_rerun=True,
        timeout=timedelta(minutes=10),
    ),
    _task(
        "environment_namespace",
        "Namespace",
        "Applies the environment's namespace.",
        safe_to_rerun=True,
        timeout=timedelta(minutes=5),
    ),
    _task(
        "environment_database",
        "Database",
        "Applies the database server, its volume and its Secret, and waits until it is ready.",
        fields=DatabaseFields,
        safe_to_rerun=True,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_application",
        "Application",
        "Applies the release (Deployment, Service, Ingress, volume) and watches its rollout.",
        safe_to_rerun=True,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_install",
        "Install",
        "Runs the install (drush site:install) in a Job.",
        fields=InstallFields,
    ),
    _task(
        "environment_verify",
        "Verify environment",
        "Checks the rollout is complete and reads the ready replicas.",
        outputs=ObservedOutputs,
        safe_to_rerun=True,
        timeout=timedelta(minutes=2),
    ),
    _task(
        "environment_deploy",
        "Deploy",
        "Applies a release and watches its rollout; re-applies the previous one if it fails.",
        fields=DeployFields,
        outputs=DeployOutputs,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_deploy_backup",
        "Backup before deploy",
        "On production, backs up the database and files before a deploy; nothing elsewhere.",
        fields=BackupFields,
        outputs=BackupOutputs,
    ),
    _task(
        "environment_rollback",
        "Roll back",
        "Re-applies the previous release, its image and its configuration.",
        outputs=DeployOutputs,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_promote",
        "Promote",
        "Deploys the release another environment runs, without a rebuild.",
        fields=PromoteFields,
        outputs=DeployOutputs,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_scale",
        "Scale",
        "Sets the application's replicas and waits for them.",
        fields=ScaleFields,
        outputs=ObservedOutputs,
        safe_to_rerun=True,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_backup",
        "Backup archive",
        "A Job that dumps the database and archives the files; writes the archive's path.",
        fields=BackupFields,
        outputs=BackupOutputs,
    ),
    _task(
        "environment_restore",
        "Restore",
        "A Job that restores the archive named by the backup task.",
    ),
    _task(
        "environment_run_command",
        "Run a command",
        "Runs a command in the CLI container, in a Job.",
        fields=RunCommandFields,
    ),
    _task(
        "environment_disable",
        "Disable",
        "Scales the application to 0 and serves a maintenance page.",
        safe_to_rerun=True,
        timeout=timedelta(minutes=10),
    ),
    _task(
        "environment_enable",
        "Enable",
        "Scales the application back and serves it again.",
        safe_to_rerun=True,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_delete",
        "Delete",
        "Deletes the namespace and waits until it is gone.",
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_install_cleanup",
        "Undo a failed install",
        "Deletes the namespace a failed install created.",
        safe_to_rerun=True,
        timeout=timedelta(minutes=15),
    ),
    _task(
        "environment_login",
        "One-time login",
        "drush uli in the CLI container of a ready pod (a short Job when none is ready).",
        outputs=LoginOutputs,
        safe_to_rerun=True,
        timeout=timedelta(seconds=30),
    ),
    _task(
        "environment_logs",
        "Logs",
        "The last lines of the application's pods.",
        fields=LogsFields,
        outputs=LogsOutputs,
        safe_to_rerun=True,
        timeout=timedelta(seconds=30),
    ),
)
