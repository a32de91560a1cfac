"""What back-ends receive: entities and task values as the catalogue's validated models.

The worker turns its claim (stored JSON) into these once per task, validating each
entity's fields with its kind's ``EntityFields`` model and each task's values and
outputs with its task type's ``Fields`` and ``Outputs``: defaults come from the models,
never from a back-end. Secrets stay ``SecretStr``; ``plain()`` keeps them so, for the
one writer that reveals them into a file only its owner can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from app.catalog.types import EntityFields, EntityKind, TaskFields

F = TypeVar("F", bound=BaseModel)


class InvalidInput(ValueError):
    """The typed input cannot give what a back-end needs (a message for the run's log)."""


@dataclass(frozen=True)
class EntityInput:
    """An entity with the entities it references (site -> platform -> server), typed."""

    id: str
    kind: EntityKind
    name: str
    url: str
    state: str | None
    fields: EntityFields
    references: Mapping[str, EntityInput] = field(default_factory=dict)
    # The values of the kind's ``credentials`` task (secrets as ``SecretStr``); never in
    # ``plain()``: only the back-end that connects with them reads them.
    credentials: TaskFields | None = None

    def fields_as(self, model: type[F]) -> F:
        """``fields`` as the model its kind declares; a builder of another kind is a bug."""
        if not isinstance(self.fields, model):
            raise InvalidInput(f"{self.kind.name} {self.name} has no {model.__name__}")
        return self.fields

    def reference(self, role: str) -> EntityInput:
        """The entity it references as ``role``; an entity saved without it cannot run."""
        try:
            return self.references[role]
        except KeyError:
            raise InvalidInput(f"{self.kind.name} {self.name} has no {role}") from None

    def plain(self) -> dict[str, Any]:
        """The JSON form: ``{id, kind, name, url, state, fields, references}``."""
        return {
            "id": self.id,
            "kind": self.kind.name,
            "name": self.name,
            "url": self.url,
            "state": self.state,
            "fields": self.fields.model_dump(mode="json"),
            "references": {role: ref.plain() for role, ref in self.references.items()},
        }


@dataclass(frozen=True)
class TaskInput:
    """One task of the entity: its values and outputs as its type's models.

    ``values`` / ``outputs`` are ``None`` when what is stored does not validate: a task
    never run whose fields have no defaults (a clone's new domain), or one stored before
    its type changed. ``refs``: the entities its ``RefersTo`` fields name.
    """

    type: str
    values: TaskFields | None
    outputs: TaskFields | None
    refs: Mapping[str, EntityInput] = field(default_factory=dict)

    def plain(self) -> dict[str, Any]:
        """The JSON form; secrets stay ``SecretStr`` for the file writer to reveal."""
        return {
            "type": self.type,
            "values": plain_values(self.values),
            "outputs": self.outputs.model_dump(mode="json") if self.outputs else {},
            "refs": {name: ref.plain() for name, ref in self.refs.items()},
        }


def plain_values(values: BaseModel | None) -> dict[str, Any]:
    """A model's JSON form, its ``SecretStr`` fields left as they are (not masked)."""
    if values is None:
        return {}
    data: dict[str, Any] = values.model_dump(mode="json")
    for name in data:
        if isinstance(secret := getattr(values, name), SecretStr):
            data[name] = secret
    return data


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class AcmeSettings:
    """How sites get certificates: the operator's ``AEGIR_ACME_*`` settings, handed by
    the worker to every task (the certificate and vhost roles read them as ``tls.acme``).

    ``ca_bundle``: a CA file the ACME client trusts for the ACME server's own HTTPS
    (a private or test ACME server), on the server that runs the client.
    """

    directory: str = LETS_ENCRYPT
    email: str | None = None
    ca_bundle: str | None = None
    renew_before_days: int = 30


@dataclass(frozen=True)
class TaskView:
    """What a variables builder sees: the entity, every task of it, and the one running
    (and the operator's ACME settings)."""

    key: str
    entity: EntityInput
    tasks: Mapping[str, TaskInput]
    acme: AcmeSettings = field(default_factory=AcmeSettings)

    @property
    def task(self) -> TaskInput:
        return self.tasks[self.key]

    def values_of(self, key: str, model: type[F]) -> F:
        """Task ``key``'s values as ``model``; its defaults if the entity has no such task."""
        task = self.tasks.get(key)
        return model() if task is None else _as(task.values, model, f"{key} values")

    def outputs_of(self, key: str, model: type[F]) -> F:
        task = self.tasks.get(key)
        return model() if task is None else _as(task.outputs, model, f"{key} outputs")


def _as(found: BaseModel | None, model: type[F], what: str) -> F:
    if found is None:
        raise InvalidInput(f"the stored {what} are not valid for {model.__name__}")
    if not isinstance(found, model):
        raise InvalidInput(f"the {what} are a {type(found).__name__}, not a {model.__name__}")
    return found
