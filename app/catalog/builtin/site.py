"""Sites: a domain served from a platform, with its database and files."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl

from app.catalog.fields import (
    DatabaseIdentifier,
    DomainName,
    Email,
    Label,
    Port,
    SafeRelativePath,
    Secret,
    Slug,
)
from app.catalog.registry import Catalog
from app.catalog.types import (
    ActionType,
    EntityFields,
    EntityKind,
    Generated,
    OnSuccess,
    OperationType,
    Reference,
    RefersTo,
    TaskFields,
    TaskType,
)


class SiteFields(EntityFields):
    aliases: list[DomainName] = Field(
        default=[], max_length=50, description="Other domains the site answers to."
    )
    https: bool = Field(default=False, description="Serve over HTTPS.")


class DatabaseFields(TaskFields):
    engine: Literal["postgresql", "mariadb"] = Field(
        default="mariadb", description="Which database server kind holds the site's data."
    )
    db_name: DatabaseIdentifier | None = Field(
        default=None, description="Database name; derived from the domain when empty."
    )
    db_user: DatabaseIdentifier | None = Field(
        default=None, description="Database user; derived from the domain when empty."
    )
    db_password: Annotated[Secret | None, Generated()] = Field(
        default=None, description="Database password; generated when empty."
    )


class DatabaseOutputs(TaskFields):
    db_name: DatabaseIdentifier | None = None
    db_user: DatabaseIdentifier | None = None


class FilesFields(TaskFields):
    files_path: SafeRelativePath | None = Field(
        default=None,
        description="Files directory, inside the site's directory sites/DOMAIN/ of the "
        "platform root; sites/DOMAIN/files when empty.",
    )


class VhostFields(TaskFields):
    port: Port | None = Field(
        default=None, description="Port the vhost listens on; the server's HTTP port when empty."
    )


class InstallFields(TaskFields):
    profile: Slug = Field(default="standard", description="Install profile (Drupal).")
    site_name: Label = Field(default="My site", description="The site's title.")
    admin_email: Email = Field(default="admin@example.com", description="The first admin's e-mail.")
    admin_password: Secret | None = Field(
        default=None, description="The first admin's password; generated when empty."
    )


class BackupArchiveFields(TaskFields):
    description: Label | None = Field(default=None, description="Why this backup was taken.")
    path: SafeRelativePath | None = Field(
        default=None,
        description="Archive to restore, relative to the server's backup directory; "
        "the latest backup writes it.",
    )


class BackupArchiveOutputs(TaskFields):
    path: SafeRelativePath | None = None
    size_bytes: int | None = None
    taken_at: datetime | None = None


class CloneFields(TaskFields):
    new_domain: DomainName = Field(description="Domain of the new site.")
    db_password: Annotated[Secret | None, Generated()] = Field(
        default=None, description="The new site's database password; generated when empty."
    )


class MigrateFields(TaskFields):
    target_platform: Annotated[Slug, RefersTo("platform")] = Field(
        description="Name of the platform to move the site to (on the same server)."
    )


class VerifyOutputs(TaskFields):
    answering: bool | None = None
    http_status: int | None = None


class LoginOutputs(TaskFields):
    url: HttpUrl | None = None


class LoginResult(BaseModel):
    url: HttpUrl = Field(description="A one-time login link.")


TASKS = (
    TaskType(
        "site_database",
        "Database",
        DatabaseFields,
        DatabaseOutputs,
        description="Creates the site's database and its user.",
    ),
    TaskType(
        "site_files",
        "Files",
        FilesFields,
        safe_to_rerun=True,
        description="Creates the files directory with the right owner and mode.",
    ),
    TaskType(
        "site_settings",
        "Settings file",
        safe_to_rerun=True,
        description="Writes the settings file with the database credentials.",
    ),
    TaskType(
        "site_vhost",
        "Web server vhost",
        VhostFields,
        safe_to_rerun=True,
        description="Writes the nginx vhost, checks it with nginx -t, then reloads.",
    ),
    TaskType(
        "site_install",
        "Install",
        InstallFields,
        description="Runs the platform's install command (Drupal: drush site:install).",
    ),
    TaskType(
        "site_verify",
        "Verify site",
        outputs=VerifyOutputs,
        safe_to_rerun=True,
        description="Checks the vhost, the database and that the site answers.",
    ),
    TaskType(
        "backup_archive",
        "Backup archive",
        BackupArchiveFields,
        BackupArchiveOutputs,
        description="One archive with the files and a database dump.",
    ),
    TaskType(
        "site_restore", "Restore", description="Restores the archive named by the backup task."
    ),
    TaskType("site_clone", "Clone", CloneFields, description="Copies the site to a new domain."),
    TaskType(
        "site_migrate",
        "Migrate",
        MigrateFields,
        description="Moves the site to another platform; rolls back on failure.",
    ),
    TaskType(
        "site_disable",
        "Disable",
        safe_to_rerun=True,
        description="Serves a maintenance page instead of the site.",
    ),
    TaskType("site_enable", "Enable", safe_to_rerun=True, description="Serves the site again."),
    TaskType("site_delete", "Delete", description="Removes vhost, files and database."),
    TaskType(
        "site_install_cleanup",
        "Undo a failed install",
        safe_to_rerun=True,
        description="Removes what a failed install created: vhost, files, database.",
    ),
    TaskType(
        "site_login",
        "One-time login",
        outputs=LoginOutputs,
        safe_to_rerun=True,
        timeout=timedelta(seconds=30),
        description="Asks Drupal for a one-time login link (drush uli).",
    ),
)

LIVE = ("enabled", "disabled")

OPERATIONS = (
    OperationType(
        "install",
        "Install",
        steps=("database", "files", "settings", "vhost", "install"),
        on_success=OnSuccess(state="enabled"),
        on_failure=("install_cleanup",),
        description="Creates the database, files, settings and vhost, then installs the site; "
        "a failed install removes what it created.",
    ),
    OperationType("verify", "Verify", steps=("verify",), requires_state=LIVE),
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
    OperationType(
        "clone",
        "Clone",
        steps=("clone",),
        requires_state=LIVE,
        on_success=OnSuccess(
            copy_to=("clone", "new_domain"),
            fresh=("database", "files", "clone", "backup_archive", "safety_backup", "migrate"),
            carry=(
                ("database.engine", "database.engine"),
                ("database.db_password", "clone.db_password"),
            ),
        ),
        description="Copies the site, its files and its database to a new domain.",
    ),
    OperationType(
        "migrate",
        "Migrate",
        steps=("backup_archive", "migrate"),
        destructive=True,
        requires_state=LIVE,
        on_success=OnSuccess(repoint=("platform", "migrate", "target_platform")),
        description="Backs up, moves the site, and rolls back if the move fails.",
    ),
    OperationType(
        "disable",
        "Disable",
        steps=("disable",),
        requires_state=("enabled",),
        on_success=OnSuccess(state="disabled"),
        description="Serves a maintenance page instead of the site.",
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
        requires_state=("disabled",),
        on_success=OnSuccess(state="deleted"),
        description="Backs up, then removes vhost, files and database; the site must be "
        "disabled first.",
    ),
)


def register(catalog: Catalog) -> None:
    catalog.add_task(*TASKS)
    catalog.add_kind(
        EntityKind(
            name="site",
            label="Site",
            plural="sites",
            fields=SiteFields,
            name_type=DomainName,
            references={
                "platform": Reference("platform", description="The codebase the site runs on."),
                "db_server": Reference("server", description="The server holding its database."),
            },
            tasks={
                "database": "site_database",
                "files": "site_files",
                "settings": "site_settings",
                "vhost": "site_vhost",
                "install": "site_install",
                "verify": "site_verify",
                "backup_archive": "backup_archive",
                "safety_backup": "backup_archive",
                "restore": "site_restore",
                "clone": "site_clone",
                "migrate": "site_migrate",
                "disable": "site_disable",
                "enable": "site_enable",
                "delete": "site_delete",
                "login": "site_login",
                "install_cleanup": "site_install_cleanup",
            },
            operations={op.name: op for op in OPERATIONS},
            actions={
                "login": ActionType(
                    "login",
                    "Log in",
                    task="login",
                    result=LoginResult,
                    # An Ansible playbook starts in 1-2 s; a stalled one answers 504.
                    timeout=timedelta(seconds=10),
                    description="A one-time login link to the site (drush uli).",
                )
            },
            description="A domain served from a platform, with its database and files.",
        )
    )
