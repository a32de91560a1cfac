"""Servers: the machines that host platforms, sites and databases."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import Field
from pydantic.config import JsonDict

from app.catalog.fields import (
    AbsolutePath,
    DatabaseIdentifier,
    Hostname,
    IpAddress,
    Label,
    Port,
    PosixUser,
)
from app.catalog.inputs import EntityInput, TaskView
from app.catalog.registry import Catalog
from app.catalog.types import (
    AnsibleHosting,
    AnsibleVariables,
    EntityFields,
    EntityKind,
    Host,
    Hosts,
    OperationType,
    TaskFields,
    TaskType,
)

# Shown in forms only while the connection is 'ssh' (app/web/forms.py applies_when).
_SSH_ONLY: JsonDict = {"applies_when": {"connection": "ssh"}}


# What Aegir calls the server, as the Hostname field says where it is.
SERVER_NAME = Annotated[
    Hostname,
    Field(
        description="What Aegir calls this server, unique among them; often its host name, "
        "but Hostname below is the address Aegir connects to.",
        examples=["web1"],
    ),
]


class ServerFields(EntityFields):
    hostname: Hostname = Field(
        description="The address Aegir connects to (over SSH) and the server's own host "
        "name; the Name above is only what Aegir calls it."
    )
    connection: Literal["ssh", "local"] = Field(
        default="ssh", description="'local' runs on the control machine itself; 'ssh' connects."
    )
    ssh_user: PosixUser = Field(
        default="aegir", description="The user Aegir logs in as.", json_schema_extra=_SSH_ONLY
    )
    ssh_port: Port = Field(default=22, json_schema_extra=_SSH_ONLY)
    python: AbsolutePath | None = Field(
        default=None,
        description="The Python that Ansible runs on the server; found when empty.",
        json_schema_extra=_SSH_ONLY,
    )
    http_port: Port = Field(default=80, description="The port nginx serves sites on.")
    http_address: IpAddress | None = Field(
        default=None, description="The address vhosts listen on; every address when empty."
    )
    nginx_conf: AbsolutePath = Field(
        default="/etc/nginx/nginx.conf", description="nginx's main configuration file."
    )
    nginx_sites_dir: AbsolutePath = Field(
        default="/etc/nginx/sites-enabled",
        description="Where Aegir writes one vhost file per site; nginx.conf must include it.",
    )
    backup_dir: AbsolutePath = Field(
        default="/var/aegir/backups", description="Where backup archives are kept."
    )
    https_port: Port = Field(default=443, description="The port nginx serves sites on over TLS.")
    certificate_dir: AbsolutePath = Field(
        default="/etc/letsencrypt",
        description="Where certbot keeps its ACME account, the sites' certificates and the "
        "webroots it answers HTTP-01 challenges from.",
    )
    postgresql_host: AbsolutePath | Hostname = Field(
        default="/var/run/postgresql",
        description="PostgreSQL's socket directory, or its host name.",
    )
    postgresql_port: Port = 5432
    postgresql_admin: DatabaseIdentifier = Field(
        default="postgres",
        description="The PostgreSQL role that creates databases; Aegir connects as it "
        "without a password (peer or trust on the socket, or ~/.pgpass).",
    )
    mariadb_socket: AbsolutePath = Field(
        default="/run/mysqld/mysqld.sock", description="MariaDB/MySQL's socket."
    )
    mariadb_admin: DatabaseIdentifier = Field(
        default="root",
        description="The MariaDB user that creates databases; Aegir connects as it over the "
        "socket without a password (unix_socket authentication, or ~/.my.cnf).",
    )
    # Debian's php8.2-fpm by default; the test suite points these at a master of its own.
    php_fpm: AbsolutePath = Field(
        default="/usr/sbin/php-fpm8.2",
        description="The php-fpm binary that serves PHP sites (checks its configuration, "
        "says its version).",
    )
    php_fpm_conf: AbsolutePath = Field(
        default="/etc/php/8.2/fpm/php-fpm.conf",
        description="php-fpm's main configuration file; it must include php_fpm_pool_dir.",
    )
    php_fpm_pool_dir: AbsolutePath = Field(
        default="/etc/php/8.2/fpm/pool.d",
        description="Where Aegir writes one php-fpm pool per PHP site.",
    )
    php_fpm_pid_file: AbsolutePath = Field(
        default="/run/php/php8.2-fpm.pid",
        description="php-fpm's pid file: Aegir reloads it (SIGUSR2) after changing a pool.",
    )
    php_fpm_socket_dir: AbsolutePath = Field(
        default="/run/php", description="Where the pools' sockets are."
    )
    php_fpm_listen_group: PosixUser = Field(
        default="www-data",
        description="The group nginx's workers run as: the only group that may connect "
        "to the pools' sockets.",
    )


class ServerVars(TypedDict):
    """The ``server`` variable of every role that runs on a server (and ``db_server``)."""

    name: str
    http_port: int
    http_address: str | None
    nginx_conf: str
    nginx_sites_dir: str
    backup_dir: str
    postgresql_host: str
    postgresql_port: int
    postgresql_admin: str
    mariadb_socket: str
    mariadb_admin: str


def server_vars(server: EntityInput) -> ServerVars:
    fields = server.fields_as(ServerFields)
    return {
        "name": server.name,
        "http_port": fields.http_port,
        "http_address": str(fields.http_address) if fields.http_address else None,
        "nginx_conf": fields.nginx_conf,
        "nginx_sites_dir": fields.nginx_sites_dir,
        "backup_dir": fields.backup_dir,
        "postgresql_host": fields.postgresql_host,
        "postgresql_port": fields.postgresql_port,
        "postgresql_admin": fields.postgresql_admin,
        "mariadb_socket": fields.mariadb_socket,
        "mariadb_admin": fields.mariadb_admin,
    }


def server_host(server: EntityInput) -> Host:
    """How to reach the server: the control machine itself, or over SSH."""
    fields = server.fields_as(ServerFields)
    return Host(
        name=server.name,
        connection=fields.connection,
        address=fields.hostname,
        user=fields.ssh_user,
        port=fields.ssh_port,
        python=fields.python,
    )


def _variables(view: TaskView) -> AnsibleVariables:
    return {"server": server_vars(view.entity)}


ANSIBLE = AnsibleHosting(hosts=lambda server: Hosts(server_host(server)), variables=_variables)


class ServerVerifyOutputs(TaskFields):
    reachable: bool = False
    os: Label | None = None
    web_server: Literal["nginx"] | None = None
    web_server_version: Label | None = None
    db_server: Literal["postgresql", "mariadb", "mysql"] | None = None
    db_server_version: Label | None = None
    postgresql_version: Label | None = None
    mariadb_version: Label | None = None


SERVER_VERIFY = TaskType(
    name="server_verify",
    label="Verify server",
    outputs=ServerVerifyOutputs,
    safe_to_rerun=True,
    description="Checks the server answers and finds its web and database servers.",
)


def register(catalog: Catalog) -> None:
    catalog.add_task(SERVER_VERIFY)
    catalog.add_kind(
        EntityKind(
            name="server",
            label="Server",
            plural="servers",
            fields=ServerFields,
            name_type=SERVER_NAME,
            tasks={"verify": "server_verify"},
            operations={"verify": OperationType("verify", "Verify", steps=("verify",))},
            description="A machine that hosts platforms, sites or databases.",
            ansible=ANSIBLE,
        )
    )
