"""Servers: the machines that host platforms, sites and databases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.catalog.fields import Hostname, Label, Port, PosixUser
from app.catalog.registry import Catalog
from app.catalog.types import EntityFields, EntityKind, OperationType, TaskFields, TaskType


class ServerFields(EntityFields):
    hostname: Hostname = Field(description="Where to reach the server.")
    connection: Literal["ssh", "local"] = Field(
        default="ssh", description="'local' runs on the control machine itself; 'ssh' connects."
    )
    ssh_user: PosixUser = Field(default="aegir", description="The user Aegir logs in as.")
    ssh_port: Port = 22


class ServerVerifyOutputs(TaskFields):
    reachable: bool = False
    os: Label | None = None
    web_server: Literal["nginx"] | None = None
    web_server_version: Label | None = None
    db_server: Literal["postgresql", "mariadb", "mysql"] | None = None
    db_server_version: Label | None = None


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
