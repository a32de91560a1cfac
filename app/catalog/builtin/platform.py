"""Platforms: one codebase (Drupal, or a static app) deployed on a server."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, TypedDict

from pydantic import ConfigDict, Field, model_validator

from app.catalog.builtin.server import server_host, server_vars
from app.catalog.fields import AbsolutePath, GitRef, GitUrl, Label, SafeRelativePath, Slug
from app.catalog.inputs import EntityInput, TaskView
from app.catalog.registry import Catalog
from app.catalog.types import (
    AnsibleHosting,
    AnsibleVariables,
    BatchOf,
    BatchPlan,
    EntityFields,
    EntityKind,
    Hosts,
    OperationType,
    Reference,
    RefersTo,
    TaskFields,
    TaskType,
)
from app.schemas import required_when

Flavor = Literal["drupal", "php", "static"]
# The flavors whose sites run PHP through php-fpm.
PHP_FLAVORS = ("drupal", "php")


class PlatformFields(EntityFields):
    root: AbsolutePath = Field(description="Where the codebase lives on the server.")
    flavor: Flavor = Field(
        default="drupal",
        description="What the codebase is: Drupal and generic PHP apps are served through "
        "a php-fpm pool of each site's own; static files as they are. Decides the install "
        "command.",
    )
    drush: SafeRelativePath = Field(
        default="vendor/bin/drush",
        description="Drush, relative to the root; what Drupal sites on it are installed "
        "and logged into with.",
    )


class PlatformVars(TypedDict):
    """The ``platform`` variable (and a migration's ``target.platform``)."""

    name: str
    root: str
    flavor: Flavor
    drush: str


def platform_vars(platform: EntityInput) -> PlatformVars:
    fields = platform.fields_as(PlatformFields)
    return {
        "name": platform.name,
        "root": fields.root,
        "flavor": fields.flavor,
        "drush": f"{fields.root}/{fields.drush}",
    }


def server_of(platform: EntityInput) -> EntityInput:
    """The server the platform is on (a required reference)."""
    return platform.reference("server")


def _variables(view: TaskView) -> AnsibleVariables:
    return {
        "server": server_vars(server_of(view.entity)),
        "platform": platform_vars(view.entity),
    }


ANSIBLE = AnsibleHosting(
    hosts=lambda platform: Hosts(server_host(server_of(platform))), variables=_variables
)


class PlatformDeployFields(TaskFields):
    model_config = ConfigDict(
        json_schema_extra=required_when("source", "git", {"git_url": {"type": "string"}})
    )

    source: Literal["git", "path"] = Field(
        default="path", description="Fetch the codebase from git, or use what is at the root."
    )
    git_url: GitUrl | None = Field(default=None, description="Repository to clone (git only).")
    git_ref: GitRef = Field(default="main", description="Branch, tag or commit to deploy.")

    @model_validator(mode="after")
    def _git_needs_url(self) -> PlatformDeployFields:
        if self.source == "git" and self.git_url is None:
            raise ValueError("git_url is required when source is 'git'")
        return self


class PlatformDeployOutputs(TaskFields):
    commit: Label | None = None
    core_version: Label | None = None
    profiles: list[Slug] = []


class PlatformVerifyOutputs(TaskFields):
    core_version: Label | None = None
    site_count: int | None = None


class PlatformUpgradeFields(TaskFields):
    target_platform: Annotated[Slug, RefersTo("platform")] = Field(
        description="The platform (on the same server) every site of this one moves to."
    )
    concurrency: int = Field(default=2, ge=1, le=50, description="Sites moving at once.")
    max_failures: int | None = Field(
        default=None,
        ge=1,
        description="Stop moving sites after this many failed; empty: carry on.",
    )
    include_disabled: bool = Field(
        default=False, description="Move disabled sites too (by default they stay)."
    )


class PlatformBatchOutputs(TaskFields):
    """What a platform's batch operation (upgrade, backup of its sites) ended with: its
    batch, and its items by how they ended."""

    batch: str | None = None
    succeeded: int | None = Field(default=None, description="Sites moved, or backed up.")
    failed: int | None = Field(default=None, description="Sites rolled back, or not backed up.")
    skipped: int | None = None
    cancelled: int | None = None


# How the upgrade's log and summary name each site's end: a failed migrate has put
# the site back where it was (``site_migrate`` rolls back; or refused before moving it).
UPGRADE_PHRASES = {
    "succeeded": "moved",
    "failed": "rolled back",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


def _upgrade_plan(view: TaskView) -> BatchPlan:
    """Every site of this platform, migrated to the target: each backed up first and
    rolled back if its move fails (the site's own ``migrate``)."""
    fields = view.values_of(view.key, PlatformUpgradeFields)
    skip = {} if fields.include_disabled else {"disabled": f"left on {view.entity.name}"}
    return BatchPlan(
        kind="site",
        operation="migrate",
        role="platform",
        values={"migrate": {"target_platform": fields.target_platform}},
        concurrency=fields.concurrency,
        max_failures=fields.max_failures,
        skip_states=skip,
        phrases=UPGRADE_PHRASES,
    )


class PlatformBackupSitesFields(TaskFields):
    description: Label | None = Field(
        default=None, description="Why these backups are taken, kept with each archive."
    )
    concurrency: int = Field(default=2, ge=1, le=20, description="Sites backed up at once.")
    max_failures: int | None = Field(
        default=None, ge=1, description="Stop starting backups after this many failed."
    )


BACKUP_PHRASES = {
    "succeeded": "backed up",
    "failed": "backup failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


def _backup_sites_plan(view: TaskView) -> BatchPlan:
    """Every live site of this platform backed up with its own ``backup`` (a schedule of
    this operation is the platform's nightly backup: one batch per slot)."""
    fields = view.values_of(view.key, PlatformBackupSitesFields)
    values = {"backup_archive": {"description": fields.description}} if fields.description else {}
    return BatchPlan(
        kind="site",
        operation="backup",
        role="platform",
        values=values,
        concurrency=fields.concurrency,
        max_failures=fields.max_failures,
        phrases=BACKUP_PHRASES,
    )


def register(catalog: Catalog) -> None:
    catalog.add_task(
        TaskType(
            name="platform_deploy",
            label="Deploy codebase",
            fields=PlatformDeployFields,
            outputs=PlatformDeployOutputs,
            safe_to_rerun=True,
            description="Puts the codebase in the platform root, from git or as it is.",
        ),
        TaskType(
            name="platform_verify",
            label="Verify platform",
            outputs=PlatformVerifyOutputs,
            safe_to_rerun=True,
            description="Checks the codebase and says what it found.",
        ),
        TaskType(
            name="platform_upgrade",
            label="Upgrade sites",
            fields=PlatformUpgradeFields,
            outputs=PlatformBatchOutputs,
            executor=BatchOf(_upgrade_plan),
            # A new attempt follows the batch the first one started (never a second).
            safe_to_rerun=True,
            timeout=timedelta(hours=12),
            description="Migrates every site of the platform to another, as a batch.",
        ),
        TaskType(
            name="platform_backup_sites",
            label="Back up sites",
            fields=PlatformBackupSitesFields,
            outputs=PlatformBatchOutputs,
            executor=BatchOf(_backup_sites_plan),
            safe_to_rerun=True,
            timeout=timedelta(hours=12),
            description="Backs up every site of the platform, as a batch.",
        ),
        TaskType(
            name="platform_delete",
            label="Delete platform",
            description="Removes the codebase; refused while sites use it.",
        ),
    )
    catalog.add_kind(
        EntityKind(
            name="platform",
            label="Platform",
            plural="platforms",
            fields=PlatformFields,
            name_type=Slug,
            references={"server": Reference("server", description="The server it is on.")},
            tasks={
                "deploy": "platform_deploy",
                "verify": "platform_verify",
                "delete": "platform_delete",
                "upgrade": "platform_upgrade",
                "backup_sites": "platform_backup_sites",
            },
            operations={
                "verify": OperationType("verify", "Verify", steps=("deploy", "verify")),
                "delete": OperationType("delete", "Delete", steps=("delete",), destructive=True),
                "upgrade": OperationType(
                    "upgrade",
                    "Upgrade",
                    steps=("upgrade",),
                    description="Moves every site to the target platform, a few at a time: "
                    "each backed up first and rolled back if its move fails.",
                ),
                "backup_sites": OperationType(
                    "backup_sites",
                    "Back up sites",
                    steps=("backup_sites",),
                    description="Backs up every site of the platform, a few at a time; "
                    "schedule it for a nightly backup of them all. A site that is not "
                    "installed is skipped, saying so.",
                ),
            },
            description="A codebase deployed on a server, that sites run on.",
            ansible=ANSIBLE,
        )
    )
