"""Platforms: one codebase (Drupal, or a static app) deployed on a server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.catalog.fields import AbsolutePath, GitRef, GitUrl, Label, Slug
from app.catalog.registry import Catalog
from app.catalog.types import (
    EntityFields,
    EntityKind,
    OperationType,
    Reference,
    TaskFields,
    TaskType,
)


class PlatformFields(EntityFields):
    root: AbsolutePath = Field(description="Where the codebase lives on the server.")
    flavor: Literal["drupal", "static"] = Field(
        default="drupal", description="What the codebase is; decides the install command."
    )


class PlatformDeployFields(TaskFields):
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
            },
            operations={
                "verify": OperationType("verify", "Verify", steps=("deploy", "verify")),
                "delete": OperationType("delete", "Delete", steps=("delete",), destructive=True),
            },
            description="A codebase deployed on a server, that sites run on.",
        )
    )
