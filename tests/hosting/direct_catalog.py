"""Site actions for the direct path's tests: a role it must leave to ansible-playbook, a
command slower than its action's timeout, and a command given a secret.

Loaded by their own stack (``AEGIR_CATALOG_MODULES``); the roles are in ``direct_roles/``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from app.catalog.fields import Secret
from app.catalog.registry import Catalog
from app.catalog.types import ActionType, AnsibleRole, OperationType, TaskFields, TaskType

ROLES = Path(__file__).resolve().parent / "direct_roles"


class SaidOutputs(TaskFields):
    said: str | None = None


class SecretFields(TaskFields):
    token: Secret | None = Field(default=None, description="Given to a command on purpose.")


class Said(BaseModel):
    said: str


def register(catalog: Catalog) -> None:
    role = AnsibleRole(roles=ROLES)
    catalog.add_task(
        TaskType("direct_fallback", "Debug", outputs=SaidOutputs, executor=role),
        TaskType("direct_slow", "Slow", executor=role),
        TaskType("direct_secret", "Secret", SecretFields, executor=role),
    )
    catalog.extend_kind(
        "site",
        tasks={"fallback": "direct_fallback", "slow": "direct_slow", "secret": "direct_secret"},
        operations=[OperationType("set_secret", "Set the secret", steps=("secret",))],
        actions=[
            ActionType("fallback", "Debug", task="fallback", result=Said,
                       timeout=timedelta(seconds=20)),
            ActionType("slow", "Slow", task="slow", result=Said, timeout=timedelta(seconds=1)),
            # Long enough to kill its worker first; short, since the request that waits
            # holds the API's SQLite write turn meanwhile.
            ActionType("stuck", "Stuck", task="slow", result=Said, timeout=timedelta(seconds=8)),
            ActionType("secret", "Secret", task="secret", result=Said,
                       timeout=timedelta(seconds=10)),
        ],
    )  # fmt: skip
