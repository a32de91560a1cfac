"""A fleet written straight into the database, row for row what the API would write.

Creating 10,000 sites through the API would take longer than the measurement itself,
so this module builds the same rows with the code the API uses (the kind's create
model for the fields, ``missing_graph`` for the tasks and operations, the run's task
rows and snapshot as a run request makes them) and inserts them with Core bulk inserts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind
from app.db import utcnow
from app.dispatch.entities import missing_graph
from app.entities.entity.schemas import create_model_for
from app.entities.run.states import RunStatus, TaskStatus
from app.models import Base
from bench import repository

CHUNK = 5000
TABLES = Base.metadata.tables
ACTOR = "admin"


@dataclass(frozen=True)
class Shape:
    """How big the fleet is."""

    sites: int
    servers: int
    platforms: int
    runs: int
    log_lines: int
    big_log: int  # lines of the one run with a big log (part of log_lines)
    logged_runs: int  # runs that have a log, besides the big one


@dataclass
class Seeded:
    """What the measurement needs to know about the fleet it asks for."""

    sites: list[uuid.UUID] = field(default_factory=list)
    site_names: list[str] = field(default_factory=list)
    runs: list[uuid.UUID] = field(default_factory=list)
    big_run: uuid.UUID | None = None
    small_run: uuid.UUID | None = None
    rows: dict[str, int] = field(default_factory=dict)


class Writer:
    """Rows gathered per table, then inserted in chunks, in dependency order."""

    def __init__(self) -> None:
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.written: dict[str, int] = {}

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.pending.setdefault(table, []).append(row)

    async def flush(self, engine: AsyncEngine, order: Sequence[str]) -> None:
        for name in order:
            rows = self.pending.pop(name, [])
            for start in range(0, len(rows), CHUNK):
                async with engine.begin() as conn:
                    await repository.insert_rows(conn, TABLES[name], rows[start : start + CHUNK])
            self.written[name] = self.written.get(name, 0) + len(rows)


# In the order their foreign keys need.
ENTITY_TABLES = (
    "entities", "entity_references", "task_instances", "operations", "operation_tasks",
    "audit_events",
)  # fmt: skip
RUN_TABLES = ("runs", "run_tasks", "audit_events")


@dataclass
class Made:
    """An entity as written: its id and its operations' ids by type."""

    id: uuid.UUID
    name: str
    operations: dict[str, uuid.UUID]


class Fleet:
    def __init__(self, catalog: Catalog, team_id: uuid.UUID, writer: Writer) -> None:
        self.catalog = catalog
        self.team_id = team_id
        self.w = writer
        self.at = utcnow() - timedelta(days=30)

    def entity(
        self, kind: EntityKind, name: str, fields: dict[str, Any], refs: dict[str, uuid.UUID]
    ) -> Made:
        """What ``POST /api/v1/{plural}`` writes: the entity, its references, its graph."""
        body = {"name": name, "fields": fields, "references": {k: str(v) for k, v in refs.items()}}
        data = create_model_for(kind).model_validate(body).model_dump(mode="json")
        entity_id, now = uuid.uuid4(), self._tick()
        self.w.add("entities", {
            "id": entity_id, "kind": kind.name, "team_id": self.team_id, "name": data["name"],
            "attributes": data["fields"], "state": None, "created_at": now, "updated_at": now,
        })  # fmt: skip
        for role, target in refs.items():
            self.w.add("entity_references", {
                "source_id": entity_id, "role": role, "target_id": target,
            })  # fmt: skip
        operations = self._graph(kind, entity_id, now)
        self._audit("entity.created", kind.name, entity_id, now, name=name)
        return Made(entity_id, name, operations)

    def _graph(self, kind: EntityKind, entity_id: uuid.UUID, now: datetime) -> dict[str, uuid.UUID]:
        tasks, operations = missing_graph(kind, {}, set())
        task_ids = {task.key: uuid.uuid4() for task in tasks}
        for task in tasks:
            self.w.add("task_instances", {
                "id": task_ids[task.key], "entity_id": entity_id, "key": task.key,
                "type": task.type, "values": {}, "outputs": {}, "created_at": now,
                "updated_at": now,
            })  # fmt: skip
        made = {}
        for operation in operations:
            made[operation.type] = operation_id = uuid.uuid4()
            self.w.add("operations", {
                "id": operation_id, "entity_id": entity_id, "type": operation.type,
            })  # fmt: skip
            for step in operation.steps:
                self.w.add("operation_tasks", {
                    "operation_id": operation_id, "position": step.position,
                    "task_id": task_ids[step.task.key], "runs": step.runs,
                })  # fmt: skip
        return made

    def run(self, kind: EntityKind, entity: Made, op_name: str, lines: int) -> uuid.UUID:
        """A run as a request (with no values) makes it, then as a worker ends it."""
        op_type = kind.operations[op_name]
        run_id, queued = uuid.uuid4(), self._tick()
        started, finished = queued + timedelta(seconds=1), queued + timedelta(seconds=20)
        self.w.add("runs", {
            "id": run_id, "operation_id": entity.operations[op_name], "entity_id": entity.id,
            "operation_type": op_name, "status": RunStatus.succeeded, "attempt": 1,
            "exit_code": 0, "values": {key: {} for key in op_type.task_keys},
            "requested_by": ACTOR, "created_at": queued, "started_at": started,
            "finished_at": finished, "lease_expires_at": None, "log_emitted": lines,
            "log_complete": True, "worker": "bench-worker", "error": None, "lost_attempts": [],
        })  # fmt: skip
        keys = [*op_type.steps, *op_type.on_failure]
        for position, key in enumerate(keys):
            ran = key in op_type.steps
            self.w.add("run_tasks", {
                "run_id": run_id, "position": position, "task_key": key,
                "task_type": kind.tasks[key],
                "status": TaskStatus.succeeded if ran else TaskStatus.skipped,
                "started_at": started if ran else None, "finished_at": finished if ran else None,
            })  # fmt: skip
        self._audit("run.requested", "run", run_id, queued, operation=op_name, entity=entity.name)
        return run_id

    def _audit(
        self, action: str, target_kind: str, target_id: uuid.UUID, at: datetime, **detail: str
    ) -> None:
        self.w.add("audit_events", {
            "at": at, "actor_id": None, "actor": ACTOR, "action": action,
            "target_kind": target_kind, "target_id": str(target_id), "team_id": self.team_id,
            "ip": None, "detail": detail,
        })  # fmt: skip

    def _tick(self) -> datetime:
        """Each row a little later than the last, as if made one after another."""
        self.at += timedelta(milliseconds=50)
        return self.at


def log_rows(run_id: uuid.UUID, lines: int, at: datetime) -> Iterator[dict[str, Any]]:
    for seq in range(1, lines + 1):
        text = f"TASK [site_verify : check {seq}] ok: [web] => changed=false seq={seq}"
        yield {"run_id": run_id, "seq": seq, "stream": "stdout", "line": text, "at": at}


async def team_id(engine: AsyncEngine, name: str) -> uuid.UUID:
    async with engine.connect() as conn:
        found = await repository.team_id(conn, name)
    if found is None:
        raise RuntimeError(f"no team {name}: create the bench's user first")
    return found


PREFIXES = ("www", "shop", "blog", "news", "docs", "intranet", "portal", "events", "jobs", "store")


def site_name(i: int) -> str:
    """Distinct names, a tenth of them with each prefix (so a filter matches many)."""
    return f"{PREFIXES[i % len(PREFIXES)]}-{i:05d}.example.com"


async def seed(engine: AsyncEngine, catalog: Catalog, team: uuid.UUID, shape: Shape) -> Seeded:
    """Servers, platforms, sites with their graphs, their runs, then the runs' logs."""
    writer, seeded = Writer(), Seeded()
    fleet = Fleet(catalog, team, writer)
    kinds = catalog.kinds
    servers = [
        fleet.entity(kinds["server"], f"web{i}.fleet.example.com", {"hostname": f"web{i}.lan"}, {})
        for i in range(shape.servers)
    ]
    platforms = [
        fleet.entity(
            kinds["platform"], f"drupal-{i}", {"root": f"/var/aegir/platforms/drupal-{i}"},
            {"server": servers[i % len(servers)].id},
        )
        for i in range(shape.platforms)
    ]  # fmt: skip
    await writer.flush(engine, ENTITY_TABLES)
    sites = await _sites(engine, fleet, shape, platforms, servers)
    seeded.sites = [site.id for site in sites]
    seeded.site_names = [site.name for site in sites]
    await _runs(engine, fleet, shape, sites, seeded)
    await _logs(engine, shape, seeded)
    seeded.rows = dict(writer.written)
    return seeded


async def _sites(
    engine: AsyncEngine, fleet: Fleet, shape: Shape, platforms: list[Made], servers: list[Made]
) -> list[Made]:
    kind = fleet.catalog.kinds["site"]
    made = []
    for i in range(shape.sites):
        refs = {
            "platform": platforms[i % len(platforms)].id,
            "db_server": servers[i % len(servers)].id,
        }
        made.append(fleet.entity(kind, site_name(i), {}, refs))
        if len(made) % 1000 == 0:  # bounded memory
            await fleet.w.flush(engine, ENTITY_TABLES)
    await fleet.w.flush(engine, ENTITY_TABLES)
    return made


async def _runs(
    engine: AsyncEngine, fleet: Fleet, shape: Shape, sites: list[Made], seeded: Seeded
) -> None:
    """Each site installed first, then verified and backed up in turn, oldest first."""
    kind = fleet.catalog.kinds["site"]
    later = ("verify", "backup")
    for i in range(shape.runs):
        site = sites[i % len(sites)]
        round_ = i // len(sites)
        op = "install" if round_ == 0 else later[round_ % len(later)]
        seeded.runs.append(fleet.run(kind, site, op, 0))
        if len(seeded.runs) % 2000 == 0:
            await fleet.w.flush(engine, RUN_TABLES)
    await fleet.w.flush(engine, RUN_TABLES)
    await _installed(engine, seeded.sites)


async def _installed(engine: AsyncEngine, site_ids: list[uuid.UUID]) -> None:
    """What a succeeded install leaves: the site enabled."""
    table = TABLES["entities"]
    async with engine.begin() as conn:
        for start in range(0, len(site_ids), CHUNK):
            chunk = site_ids[start : start + CHUNK]
            await conn.execute(table.update().where(table.c.id.in_(chunk)).values(state="enabled"))


async def _logs(engine: AsyncEngine, shape: Shape, seeded: Seeded) -> None:
    """One big log on the newest run; the rest spread evenly over the newest runs."""
    newest = seeded.runs[::-1]
    seeded.big_run, rest = newest[0], newest[1 : 1 + shape.logged_runs]
    per_run = (shape.log_lines - shape.big_log) // max(1, len(rest))
    seeded.small_run = rest[0] if rest else None
    await _log(engine, seeded.big_run, shape.big_log)
    for run_id in rest:
        await _log(engine, run_id, per_run)


async def _log(engine: AsyncEngine, run_id: uuid.UUID, lines: int) -> None:
    table, runs = TABLES["run_log_lines"], TABLES["runs"]
    at = utcnow()
    rows = log_rows(run_id, lines, at)
    async with engine.begin() as conn:
        await repository.insert_chunks(conn, table, rows, CHUNK)
        await conn.execute(runs.update().where(runs.c.id == run_id).values(log_emitted=lines))
