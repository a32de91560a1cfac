"""Servers: the machines that host platforms, sites and databases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, IPvAnyAddress

from app.catalog.fields import AbsolutePath, DatabaseIdentifier, Hostname, Label, Port, PosixUser
from app.catalog.registry import Catalog
from app.catalog.types import EntityFields, EntityKind, OperationType, TaskFields, TaskType


class ServerFields(EntityFields):
    hostname: Hostname = Field(description="Where to reach the server.")
    connection: Literal["ssh", "local"] = Field(
        default="ssh", description="'local' runs on the control machine itself; 'ssh' connects."
    )
    ssh_user: PosixUser = Field(default="aegir", description="The user Aegir logs in as.")
    ssh_port: Port = 22
    python: AbsolutePath | None = Field(
        default=None,
        description="The Python that Ansible runs on the server ('ssh' only); found when empty.",
    )
    http_port: Port = Field(default=80, description="The port nginx serves sites on.")
    http_address: IPvAnyAddress | None = Field(
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
            name_type=Hostname,
            tasks={"verify": "server_verify"},
            operations={"verify": OperationType("verify", "Verify", steps=("verify",))},
            description="A machine that hosts platforms, sites or databases.",
        )
    )
