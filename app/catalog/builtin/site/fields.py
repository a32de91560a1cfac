"""A site's own fields, and its tasks' values and outputs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl

from app.catalog.fields import (
    AbsolutePath,
    DatabaseIdentifier,
    DomainName,
    Email,
    Label,
    Port,
    SafeRelativePath,
    Secret,
    Slug,
)
from app.catalog.types import EntityFields, Generated, RefersTo, TaskFields


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


class PruneFields(TaskFields):
    """Retention of a site's backup archives: either rule keeps an archive; the one the
    backup task names (the restore form's) is always kept. With neither rule given, the
    prune run fails saying so (its role asserts it) and removes nothing."""

    keep_last: int | None = Field(
        default=None, ge=1, le=100_000, description="Keep the newest N archives."
    )
    keep_days: int | None = Field(
        default=None, ge=1, le=100_000, description="Keep archives younger than N days."
    )


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
    php_version: Label | None = Field(
        default=None, description="The PHP version that answers (PHP platforms only)."
    )
    certificate_expires: datetime | None = None
    checked_at: datetime | None = None


class CertificateFields(TaskFields):
    force: bool = Field(
        default=False,
        description="Renew now even when the certificate is not due (kept for the next runs "
        "of this operation until unticked).",
    )


class CertificateOutputs(TaskFields):
    certificate_path: AbsolutePath | None = None
    key_path: AbsolutePath | None = None
    certificate_expires: datetime | None = None
    certificate_serial: Annotated[str, Field(pattern=r"^[0-9A-F]{1,64}$")] | None = None
    checked_at: datetime | None = None


class LoginOutputs(TaskFields):
    url: HttpUrl | None = None


class LoginResult(BaseModel):
    url: HttpUrl = Field(description="A one-time login link.")
