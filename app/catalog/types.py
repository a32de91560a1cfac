"""The catalogue's vocabulary: task, operation, action and entity types, in code."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)

from app.catalog.inputs import EntityInput, TaskView

# Extra variables for an Ansible role, by top-level name: JSON, and ``SecretStr`` where a
# secret goes (revealed only into the run's private variables file).
AnsibleVariables = Mapping[str, Any]


def whole_numbers(model: type[BaseModel], data: Any) -> Any:
    """``data`` with 80.0 as 80 where an ``int`` is declared: JSON has one number type, and
    JSON Schema counts 80.0 an integer; strict validation does not (80.5 stays refused)."""
    if not isinstance(data, dict):
        return data
    whole = _int_fields(model)
    return {
        name: int(value)
        if name in whole and isinstance(value, float) and value.is_integer()
        else value
        for name, value in data.items()
    }


@functools.cache  # once per model: this runs on every validation, reads included
def _int_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if info.annotation is int or int in get_args(info.annotation)
    )


class TaskFields(BaseModel):
    """Base of every task's ``Fields`` and ``Outputs`` model: unknown keys are refused.

    Strict: values come as JSON and are taken as typed, as the OpenAPI document says (no
    ``0`` for false, no ``"80"`` for 80). Outputs, which back-ends write (a timestamp as
    text), are read with ``strict=False`` where they are checked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        return whole_numbers(cls, data)


class NoFields(TaskFields):
    pass


@dataclass(frozen=True)
class AnsibleRole:
    """Run the Ansible role named like the task type, from the ``roles`` directory.

    ``roles``: where the package that declares the task type ships its roles (a plugin:
    ``Path(__file__).parent / "roles"``). ``None`` means the Ansible back-end's own
    directory, ``executors/ansible/roles``: the built-in task types say so this way
    because the catalogue must not import its back-ends. Its shared roles
    (``aegir_common``) stay on the roles path either way.

    ``variables``: what this task's role reads beyond its entity kind's variables (where
    a clone goes, which archive a restore reads), built from the typed input.
    """

    roles: Path | None = None
    variables: Callable[[TaskView], AnsibleVariables] | None = None
    kind: ClassVar[Literal["ansible"]] = "ansible"

    def describe(self, task_name: str) -> str:
        return f"ansible role {task_name}"


@dataclass(frozen=True)
class LocalCommand:
    """Run one command on the control machine, from an argv list.

    Each element may hold ``{placeholders}`` filled from plain data (``{entity.name}``,
    ``{values.field}``); a placeholder fills one argv element and never reaches a shell.
    """

    argv: tuple[str, ...]
    kind: ClassVar[Literal["local"]] = "local"

    def describe(self, task_name: str) -> str:
        return "local command " + " ".join(self.argv)


@dataclass(frozen=True)
class KubernetesStep:
    """Run the Kubernetes back-end's step ``step`` (``executors/kubernetes``) on a cluster.

    A step is one of the back-end's verbs (apply an environment's manifests and watch the
    rollout, run a Job, exec in a ready pod, ...); its manifests come from pure builders
    of the entity's typed fields, never from text templates. The catalogue names the
    step, it does not import the back-end.
    """

    step: str
    kind: ClassVar[Literal["kubernetes"]] = "kubernetes"

    def describe(self, task_name: str) -> str:
        return f"kubernetes {self.step}"


class Sink(Protocol):
    """Where an in-process task reports: the executors' ``Emitter``, seen from here."""

    async def log(self, stream: str, line: str) -> None: ...

    async def output(self, name: str, value: Any) -> None: ...


@dataclass(frozen=True)
class InProcess:
    """Run a coroutine inside the worker, with no subprocess: a run of it goes through
    all that a command's does (claim, lease, events, relay, finish) and nothing else,
    so the engine's own cost can be measured and tested apart from a program's start.

    ``function(values, sink)`` logs and writes outputs through ``sink`` and answers the
    exit code; cancel and the timeout stop it at its next ``await``.
    """

    function: Callable[[TaskFields, Sink], Awaitable[int]]
    kind: ClassVar[Literal["inprocess"]] = "inprocess"

    def describe(self, task_name: str) -> str:
        return f"in-process {self.function.__module__}.{self.function.__qualname__}"


@dataclass(frozen=True)
class BatchPlan:
    """What a ``BatchOf`` task runs: ``operation`` on every entity of ``kind`` whose
    ``role`` reference is the task's entity ("every site of this platform"), with
    ``values`` given once. ``skip_states``: an entity in one of these states is skipped,
    with the words given as why (a disabled site is left where it is)."""

    kind: str
    operation: str
    role: str
    values: Mapping[str, Mapping[str, Any]]
    concurrency: int = 2
    max_failures: int | None = None
    skip_states: Mapping[str, str] = field(default_factory=dict)
    # How the task's log names an item's end: status -> phrase ("moved to static-new").
    phrases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchOf:
    """Run one operation over many entities through the batch machinery
    (``app.dispatch.batches``) and wait for the batch: the task's run starts the batch,
    logs one line per item as it ends, and ends with the batch's summary. Cancelling the
    run cancels the batch. ``plan`` builds the batch from the task's typed input."""

    plan: Callable[[TaskView], BatchPlan]
    kind: ClassVar[Literal["batch"]] = "batch"

    def describe(self, task_name: str) -> str:
        return "batch of runs"


ExecutorBinding = AnsibleRole | LocalCommand | KubernetesStep | InProcess | BatchOf


@dataclass(frozen=True)
class TaskType:
    name: str
    label: str
    fields: type[TaskFields] = NoFields
    outputs: type[TaskFields] = NoFields
    executor: ExecutorBinding = AnsibleRole()
    # Whether a run that lost its worker may execute this task again.
    safe_to_rerun: bool = False
    timeout: timedelta = timedelta(minutes=30)
    description: str = ""

    def secret_fields(self) -> frozenset[str]:
        return frozenset(
            name for name, info in self.fields.model_fields.items() if _is_secret(info.annotation)
        )

    def generated_secrets(self) -> frozenset[str]:
        """Secret fields that Aegir fills with a random value when a run leaves them empty."""
        return frozenset(
            name
            for name, info in self.fields.model_fields.items()
            if any(isinstance(m, Generated) for m in info.metadata)
        )

    def reference_fields(self) -> dict[str, str]:
        """Fields naming another entity: field name -> entity kind."""
        return {
            name: meta.kind
            for name, info in self.fields.model_fields.items()
            for meta in info.metadata
            if isinstance(meta, RefersTo)
        }


@dataclass(frozen=True)
class RefersTo:
    """Marks a task field whose value is the name of an entity of ``kind``.

    A run request refuses a name that the user cannot see; executors receive the named
    entity as plain data in ``tasks[key]["refs"][field]``.
    """

    kind: str


@dataclass(frozen=True)
class Generated:
    """Marks a secret field that Aegir fills with a random value when it is left empty."""


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    args = getattr(annotation, "__args__", ())
    return any(_is_secret(arg) for arg in args)


@dataclass(frozen=True)
class OnSuccess:
    """What a succeeded run changes in the entity graph, in the transaction that records it.

    ``state``: the entity's new state. ``repoint``: (reference role, task key, field): the
    reference now names the entity that field names; ``repoint_output``: the same, read
    from the task's outputs (what the back-end says it applied: a rollback's release).
    ``copy_to``: (task key, field): a
    copy of the entity (fields, references, state, task values) is created under that
    name; the tasks in ``fresh`` start with no values on the copy, except what ``carry``
    sets: pairs of ("task.field" on the copy, "task.field" here).
    """

    state: str | None = None
    repoint: tuple[str, str, str] | None = None
    repoint_output: tuple[str, str, str] | None = None
    copy_to: tuple[str, str] | None = None
    fresh: tuple[str, ...] = ()
    carry: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OperationType:
    """Ordered task keys of an entity kind; ``reads`` are shown and passed but not run.

    ``requires_state``: the entity states in which a run may be requested (empty: any).
    """

    name: str
    label: str
    steps: tuple[str, ...]
    reads: tuple[str, ...] = ()
    destructive: bool = False
    description: str = ""
    requires_state: tuple[str, ...] = ()
    on_success: OnSuccess = OnSuccess()
    # Task keys run, in order, after a step fails, to undo what the run did (they see
    # which steps completed); the run stays failed with the failed step's exit code.
    on_failure: tuple[str, ...] = ()

    @property
    def task_keys(self) -> tuple[str, ...]:
        return self.steps + tuple(key for key in self.reads if key not in self.steps)


@dataclass(frozen=True)
class ActionType:
    """A task run within the request; its answer is ``result``."""

    name: str
    label: str
    task: str
    result: type[BaseModel]
    timeout: timedelta = timedelta(seconds=5)
    description: str = ""
    # The entity states in which it can run (empty: any); elsewhere it is refused (409)
    # and its button says what to do first.
    requires_state: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reference:
    kind: str
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Host:
    """A machine a task runs on, as the server kind describes it."""

    name: str
    connection: Literal["ssh", "local"]
    address: str
    user: str
    port: int
    # The Python that Ansible runs there; found by Ansible when ``None``.
    python: str | None = None


@dataclass(frozen=True)
class Hosts:
    """Where an entity's tasks run (``target``) and where its database is (``db``)."""

    target: Host | None
    db: Host | None = None


@dataclass(frozen=True)
class AnsibleHosting:
    """How the Ansible back-end sees an entity of a kind, built from the kind's fields.

    ``hosts``: the machines its roles run on. ``variables``: the extra variables every
    role of the kind reads (``server``, ``platform``, ``site``, ...), from the typed
    entity and its tasks' typed values; the back-end adds only its ``aegir`` block.
    """

    hosts: Callable[[EntityInput], Hosts]
    variables: Callable[[TaskView], AnsibleVariables]


@dataclass(eq=False)  # identity: kinds key caches of generated schemas
class EntityKind:
    name: str
    label: str
    plural: str
    fields: type[EntityFields]
    name_type: Any
    references: dict[str, Reference] = field(default_factory=dict)
    # task key -> task type name; one task instance per key on each entity
    tasks: dict[str, str] = field(default_factory=dict)
    operations: dict[str, OperationType] = field(default_factory=dict)
    actions: dict[str, ActionType] = field(default_factory=dict)
    description: str = ""
    # What Ansible roles see of it; ``None``: its tasks run on the control machine with
    # the ``aegir`` block only.
    ansible: AnsibleHosting | None = None
    # What its page shows of the outputs its back-end wrote back (replicas observed).
    summaries: tuple[Summary, ...] = ()
    # A task key whose values (secrets among them) go with the entity to executors
    # wherever it is referenced, as ``EntityInput.credentials``: a cluster's token.
    # Entity fields have no encrypted form; task values do.
    credentials: str | None = None


@dataclass(frozen=True)
class Summary:
    """A value an entity's page shows from its tasks' outputs: of the ``sources``
    ((task key, output field) pairs) that hold one, the newest by the ISO time in the same
    task's ``at`` output (without ``at``: the first found). A list of objects is a table
    of ``columns`` (stored JSON may not keep its keys' order: PostgreSQL's does not).
    """

    label: str
    sources: tuple[tuple[str, str], ...]
    at: str | None = None
    columns: tuple[str, ...] = ()

    def value(self, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
        found = [
            (str(task.get(self.at) or "") if self.at else "", task[field])
            for key, field in self.sources
            if field in (task := outputs.get(key, {}))
        ]
        if not found:
            return None
        return max(found, key=lambda pair: pair[0])[1] if self.at else found[0][1]


class EntityFields(BaseModel):
    """Base of every entity kind's own fields: strict, like ``TaskFields``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        return whole_numbers(cls, data)


def check_output(outputs: type[BaseModel], name: str, value: Any) -> Any:
    """The JSON form of ``value`` for the declared output ``name``; ``ValueError`` if not."""
    if name not in outputs.model_fields:
        declared = ", ".join(outputs.model_fields) or "none"
        raise ValueError(f"{name!r} is not a declared output (declared: {declared})")
    try:
        model = outputs.__pydantic_validator__.validate_assignment(
            outputs.model_construct(), name, value, strict=False
        )
    except ValidationError as error:
        raise ValueError(f"{name!r}: {error.errors(include_url=False)[0]['msg']}") from None
    checked = outputs.model_validate(model, strict=False)
    return checked.model_dump(mode="json", include={name})[name]


def compose_values_model(
    model_name: str, task_keys: tuple[str, ...], task_models: dict[str, type[TaskFields]]
) -> type[BaseModel]:
    """One namespace per task key, each holding that task's ``Fields`` model."""
    namespaces: dict[str, Any] = {key: (task_models[key], ...) for key in task_keys}
    model: type[BaseModel] = create_model(
        model_name, __config__=ConfigDict(extra="forbid"), **namespaces
    )
    return model
