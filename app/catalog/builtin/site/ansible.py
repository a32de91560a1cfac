"""What the Ansible roles of a site read, built from its typed fields and task values.

Every path a role writes to is derived here, from fields validated as paths, domains
and identifiers: roles never build a path of their own.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, TypedDict

from pydantic import SecretStr

from app.catalog.builtin.platform import PHP_FLAVORS, Flavor, PlatformVars, platform_vars
from app.catalog.builtin.platform import server_of as platform_server
from app.catalog.builtin.server import ServerFields, ServerVars, server_host, server_vars
from app.catalog.builtin.site.fields import (
    BackupArchiveFields,
    BackupArchiveOutputs,
    CloneFields,
    DatabaseFields,
    FilesFields,
    PruneFields,
    SiteFields,
    VhostFields,
)
from app.catalog.inputs import EntityInput, InvalidInput, TaskView
from app.catalog.types import AnsibleHosting, AnsibleVariables, Hosts

DB_IDENTIFIER_LENGTH = 32


def db_identifier(domain: str) -> str:
    """A database or user name from a domain: www.example.com -> www_example_com."""
    name = re.sub(r"[^a-z0-9]", "_", domain.lower())[:DB_IDENTIFIER_LENGTH]
    return name if re.match(r"[a-z_]", name) else f"s{name}"[:DB_IDENTIFIER_LENGTH]


def php_user(domain: str) -> str:
    """The site's own system user, that its PHP runs as: readable, unique, at most 32
    characters (www.example.com -> www_example_com_1a2b3c4d)."""
    digest = hashlib.sha256(domain.encode()).hexdigest()[:8]
    return f"{db_identifier(domain)[:23]}_{digest}"


class PhpPool(TypedDict):
    """The site's php-fpm pool (``site.php``): written when ``enabled`` (a PHP flavor)."""

    enabled: bool
    user: str
    pool_file: str
    socket: str
    open_basedir: str
    tmp_dir: str
    fpm: str
    fpm_conf: str
    pid_file: str
    listen_group: str


def php_pool(domain: str, platform: PlatformVars, server: ServerFields) -> PhpPool:
    """One pool per site: its own user and socket; PHP reads only the platform root.

    open_basedir cannot keep a site out of a sibling's directory under the same root:
    file modes do (the settings file is readable by the site's user only).
    """
    return {
        "enabled": platform["flavor"] in PHP_FLAVORS,
        "user": php_user(domain),
        "pool_file": f"{server.php_fpm_pool_dir}/{domain}.conf",
        "socket": f"{server.php_fpm_socket_dir}/{domain}.sock",
        "open_basedir": f"{platform['root']}/",
        "tmp_dir": f"{platform['root']}/sites/{domain}/php-tmp",
        "fpm": server.php_fpm,
        "fpm_conf": server.php_fpm_conf,
        "pid_file": server.php_fpm_pid_file,
        "listen_group": server.php_fpm_listen_group,
    }


class SiteLayout(TypedDict):
    """Where a site lives on a platform: every path it may write."""

    domain: str
    platform: str
    root: str
    flavor: Flavor
    port: int
    address: str | None
    aliases: list[str]
    dir: str
    files_path: str
    files_dir: str
    settings_file: str
    maintenance_dir: str
    vhost_file: str
    backup_dir: str
    php: PhpPool


class SiteVars(SiteLayout):
    """The ``site`` variable: its layout, and how it is served."""

    url: str
    https: bool


class AcmeVars(TypedDict):
    """``tls.acme``: the operator's ACME settings (``AEGIR_ACME_*``)."""

    directory: str
    email: str | None
    ca_bundle: str | None
    renew_before_days: int


class TlsVars(TypedDict):
    """The ``tls`` variable: whether and how the site is served over HTTPS.

    The vhost serves TLS when ``enabled`` and ``certificate`` exists on the server; until
    then it serves plain HTTP with the ACME challenge location (``webroot``).
    """

    enabled: bool
    https_port: int
    domains: list[str]
    certbot_dir: str
    webroot: str
    certificate: str
    key: str
    acme: AcmeVars


class DatabaseVars(TypedDict):
    """The ``db`` variable (and a clone's ``clone.db``)."""

    engine: Literal["postgresql", "mariadb"]
    name: str
    user: str
    password: SecretStr | None
    host: str
    port: int | None
    socket: str | None
    admin: str


def site_layout(
    domain: str,
    platform: PlatformVars,
    server_entity: EntityInput,
    files: FilesFields,
    vhost: VhostFields,
) -> SiteLayout:
    server = server_vars(server_entity)
    root = platform["root"]
    files_path = files.files_path or f"sites/{domain}/files"
    if not files_path.startswith(f"sites/{domain}/"):
        # Removing a site removes its directory: another site's files must never be in it.
        raise InvalidInput(
            f"files_path {files_path!r} must be inside sites/{domain}/, the site's own directory"
        )
    settings = "settings.php" if platform["flavor"] in PHP_FLAVORS else "settings.json"
    return {
        "domain": domain,
        "platform": platform["name"],
        "root": root,
        "flavor": platform["flavor"],
        "port": vhost.port or server["http_port"],
        "address": server["http_address"],
        "aliases": [],
        "dir": f"{root}/sites/{domain}",
        "files_path": files_path,
        "files_dir": f"{root}/{files_path}",
        "settings_file": f"{root}/sites/{domain}/{settings}",
        "maintenance_dir": f"{root}/sites/{domain}/maintenance",
        "vhost_file": f"{server['nginx_sites_dir']}/{domain}.conf",
        "backup_dir": f"{server['backup_dir']}/{domain}",
        "php": php_pool(domain, platform, server_entity.fields_as(ServerFields)),
    }


def database_vars(domain: str, database: DatabaseFields, db_server: ServerVars) -> DatabaseVars:
    postgresql = database.engine == "postgresql"
    return {
        "engine": database.engine,
        "name": database.db_name or db_identifier(domain),
        "user": database.db_user or db_identifier(domain),
        "password": database.db_password,
        "host": db_server["postgresql_host"] if postgresql else "localhost",
        "port": db_server["postgresql_port"] if postgresql else None,
        "socket": None if postgresql else db_server["mariadb_socket"],
        "admin": db_server["postgresql_admin" if postgresql else "mariadb_admin"],
    }


def site_vars(view: TaskView) -> SiteVars:
    """The ``site`` variable: where the site lives (a plugin's role may write there too)."""
    site = view.entity
    fields = site.fields_as(SiteFields)
    platform = site.reference("platform")
    files, vhost = view.values_of("files", FilesFields), view.values_of("vhost", VhostFields)
    layout = site_layout(
        site.name, platform_vars(platform), platform_server(platform), files, vhost
    )
    return {**layout, "url": site.url, "aliases": fields.aliases, "https": fields.https}


def tls_vars(view: TaskView) -> TlsVars:
    """``tls``: certbot's paths on the site's server (its lineage is named by the domain)."""
    site = view.entity
    fields = site.fields_as(SiteFields)
    server = platform_server(site.reference("platform")).fields_as(ServerFields)
    certbot, live = server.certificate_dir, f"{server.certificate_dir}/live/{site.name}"
    acme = view.acme
    return {
        "enabled": fields.https,
        "https_port": server.https_port,
        "domains": [site.name, *fields.aliases],
        "certbot_dir": certbot,
        "webroot": f"{certbot}/webroot/{site.name}",
        "certificate": f"{live}/fullchain.pem",
        "key": f"{live}/privkey.pem",
        "acme": {
            "directory": acme.directory,
            "email": acme.email,
            "ca_bundle": acme.ca_bundle,
            "renew_before_days": acme.renew_before_days,
        },
    }


def _variables(view: TaskView) -> AnsibleVariables:
    """``server``, ``platform``, ``site``, ``db_server``, ``db`` and ``tls``, for every site
    role."""
    site = view.entity
    platform = site.reference("platform")
    db_server = server_vars(site.reference("db_server"))
    return {
        "server": server_vars(platform_server(platform)),
        "platform": platform_vars(platform),
        "site": site_vars(view),
        "db_server": db_server,
        "db": database_vars(site.name, view.values_of("database", DatabaseFields), db_server),
        "tls": tls_vars(view),
    }


def _site_hosts(site: EntityInput) -> Hosts:
    platform = site.reference("platform")
    return Hosts(server_host(platform_server(platform)), server_host(site.reference("db_server")))


def clone_vars(view: TaskView) -> AnsibleVariables:
    """``clone``: the new site's layout and database, derived like the site's own."""
    clone = view.values_of(view.key, CloneFields)
    domain = clone.new_domain
    platform = view.entity.reference("platform")
    server = platform_server(platform)
    vhost = view.values_of("vhost", VhostFields)
    engine = view.values_of("database", DatabaseFields).engine
    database = DatabaseFields(engine=engine, db_password=clone.db_password)
    layout = site_layout(domain, platform_vars(platform), server, FilesFields(), vhost)
    return {
        "clone": {
            **layout,
            "url": f"http://{domain}",
            "db": database_vars(domain, database, server_vars(view.entity.reference("db_server"))),
        }
    }


def restore_vars(view: TaskView) -> AnsibleVariables:
    """``restore.archive``: the archive the backup task names, or the latest it wrote."""
    chosen = view.values_of("backup_archive", BackupArchiveFields).path
    path = chosen or view.outputs_of("backup_archive", BackupArchiveOutputs).path
    server = server_vars(platform_server(view.entity.reference("platform")))
    return {"restore": {"archive": f"{server['backup_dir']}/{path}" if path else None}}


def prune_vars(view: TaskView) -> AnsibleVariables:
    """``prune``: the retention rules, and the archive never to remove: the one the
    backup task names (the restore form's), chosen or the latest written."""
    rules = view.values_of(view.key, PruneFields)
    chosen = view.values_of("backup_archive", BackupArchiveFields).path
    path = chosen or view.outputs_of("backup_archive", BackupArchiveOutputs).path
    server = server_vars(platform_server(view.entity.reference("platform")))
    return {
        "prune": {
            "keep_last": rules.keep_last,
            "keep_days": rules.keep_days,
            "protected": f"{server['backup_dir']}/{path}" if path else None,
        }
    }


def migrate_vars(view: TaskView) -> AnsibleVariables:
    """``target``: the platform the site moves to and where the site lives there."""
    target = view.task.refs.get("target_platform")
    if target is None:
        return {}
    new_platform = platform_vars(target)
    server = platform_server(view.entity.reference("platform"))
    files, vhost = view.values_of("files", FilesFields), view.values_of("vhost", VhostFields)
    return {
        "target": {
            "platform": new_platform,
            "same_server": platform_server(target).name == server.name,
            "site": site_layout(view.entity.name, new_platform, server, files, vhost),
        }
    }


ANSIBLE = AnsibleHosting(hosts=_site_hosts, variables=_variables)
