"""Sites: a domain served from a platform, with its database and files."""

from __future__ import annotations

from datetime import timedelta

from app.catalog.builtin.site import ansible
from app.catalog.builtin.site.fields import (
    BackupArchiveFields,
    BackupArchiveOutputs,
    CertificateFields,
    CertificateOutputs,
    CloneFields,
    DatabaseFields,
    DatabaseOutputs,
    FilesFields,
    InstallFields,
    LoginOutputs,
    LoginResult,
    MigrateFields,
    PruneFields,
    SiteFields,
    VerifyOutputs,
    VhostFields,
)
from app.catalog.fields import DomainName
from app.catalog.registry import Catalog
from app.catalog.types import (
    ActionType,
    AnsibleRole,
    EntityKind,
    OnSuccess,
    OperationType,
    Reference,
    Summary,
    TaskType,
)

__all__ = [
    "BackupArchiveFields",
    "BackupArchiveOutputs",
    "CertificateFields",
    "CertificateOutputs",
    "CloneFields",
    "DatabaseFields",
    "DatabaseOutputs",
    "FilesFields",
    "InstallFields",
    "LoginOutputs",
    "LoginResult",
    "MigrateFields",
    "PruneFields",
    "SiteFields",
    "VerifyOutputs",
    "VhostFields",
    "register",
]

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
        "site_certificate",
        "Certificate",
        outputs=CertificateOutputs,
        safe_to_rerun=True,
        description="When the site is served over HTTPS: obtains a certificate for its "
        "domain and aliases over ACME (certbot, HTTP-01 through its own vhost) when it has "
        "none, when its domains changed or when it is due for renewal, then serves TLS with "
        "it and redirects HTTP to HTTPS. A failed attempt leaves the site served as before.",
    ),
    TaskType(
        "site_certificate_renew",
        "Renew certificate",
        CertificateFields,
        CertificateOutputs,
        safe_to_rerun=True,
        description="The certificate task (its role), renewing when the certificate expires "
        "within AEGIR_ACME_RENEW_BEFORE_DAYS, or now when forced.",
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
        "site_restore",
        "Restore",
        executor=AnsibleRole(variables=ansible.restore_vars),
        description="Restores the archive named by the backup task.",
    ),
    TaskType(
        "backup_prune",
        "Prune backups",
        PruneFields,
        executor=AnsibleRole(variables=ansible.prune_vars),
        safe_to_rerun=True,
        description="Removes the site's oldest archives beyond the retention; never the "
        "archive the backup task names.",
    ),
    TaskType(
        "site_clone",
        "Clone",
        CloneFields,
        executor=AnsibleRole(variables=ansible.clone_vars),
        description="Copies the site to a new domain.",
    ),
    TaskType(
        "site_migrate",
        "Migrate",
        MigrateFields,
        executor=AnsibleRole(variables=ansible.migrate_vars),
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
        steps=("database", "files", "settings", "vhost", "install", "certificate"),
        on_success=OnSuccess(state="enabled"),
        on_failure=("install_cleanup",),
        description="Creates the database, files, settings and vhost, then installs the site "
        "(and obtains its certificate when it is served over HTTPS); a failed install "
        "removes what it created.",
    ),
    OperationType("verify", "Verify", steps=("verify",), requires_state=LIVE),
    OperationType("backup", "Back up", steps=("backup_archive",), requires_state=LIVE),
    OperationType(
        "prune_backups",
        "Prune backups",
        steps=("prune",),
        description="Removes archives beyond the retention (keep the newest N and/or those "
        "younger than N days), logging each; the restore form's archive is always kept.",
    ),
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
    OperationType(
        "certificate",
        "Certificate",
        steps=("certificate",),
        requires_state=LIVE,
        description="Serves the site over HTTPS (turn HTTPS on first): obtains its "
        "certificate if it has none for its current domains, then redirects HTTP to HTTPS.",
    ),
    OperationType(
        "renew_certificate",
        "Renew certificate",
        steps=("renew_certificate",),
        requires_state=LIVE,
        description="Renews the certificate when it expires within the renewal window "
        "(AEGIR_ACME_RENEW_BEFORE_DAYS) or when forced; schedule it daily.",
    ),
)


# The site's page: the PHP version that answered its last verify, and when its
# certificate expires, as last issued, renewed or verified.
SUMMARIES = (
    Summary("PHP version", (("verify", "php_version"),)),
    Summary(
        "Certificate expires",
        tuple(
            (key, "certificate_expires") for key in ("certificate", "renew_certificate", "verify")
        ),
        at="checked_at",
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
                "certificate": "site_certificate",
                "renew_certificate": "site_certificate_renew",
                "verify": "site_verify",
                "backup_archive": "backup_archive",
                "safety_backup": "backup_archive",
                "prune": "backup_prune",
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
                    requires_state=LIVE,
                )
            },
            description="A domain served from a platform, with its database and files.",
            ansible=ansible.ANSIBLE,
            summaries=SUMMARIES,
        )
    )
