"""Fleet commands of the remote CLI: ``aegir schedules``, ``aegir batches``,
``aegir notifications``, over the same API as the dashboard's pages."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from app.client import output
from app.client.api import Api, ApiError, parse_sets
from app.client.commands import JsonOpt, SetOpt, server

FINAL_BATCH = {"succeeded", "failed", "stopped", "cancelled"}

schedules_app = typer.Typer(
    no_args_is_help=True,
    help="Schedules: list, show, create, pause, resume, delete, slots.",
    rich_markup_mode=None,
)
batches_app = typer.Typer(
    no_args_is_help=True, help="Batches: list, show, run, cancel.", rich_markup_mode=None
)
notifications_app = typer.Typer(
    no_args_is_help=True,
    help="Notification targets: list, show, test, deliveries.",
    rich_markup_mode=None,
)


def _operation(api: Api, kind: str, name: str, operation: str) -> dict[str, Any]:
    entity = api.entity(api.kind(kind), name)
    for op in entity.get("operations", []):
        if op["type"] == operation:
            return {**op, "entity": entity}
    names = ", ".join(op["type"] for op in entity.get("operations", []))
    raise ApiError(404, f"{kind} {name} has no operation {operation!r} (it has: {names})")


# --- schedules ---------------------------------------------------------------------------


@schedules_app.command("list")
def schedules_list(
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json: JsonOpt = False,
) -> None:
    """Schedules you can see."""
    with server() as api:
        page = api.get("/api/v1/schedules", limit=limit, offset=offset)
        columns = [
            ("name", "NAME"),
            ("cron", "CRON"),
            ("timezone", "ZONE"),
            ("paused", "PAUSED"),
            ("id", "ID"),
        ]
        output.listing(page, columns, json=json, noun="schedules")


@schedules_app.command("show")
def schedules_show(schedule_id: str, json: JsonOpt = False) -> None:
    """A schedule, with what it says in words and its next fire times."""
    with server() as api:
        schedule = api.get(f"/api/v1/schedules/{schedule_id}")
        if json:
            return output.as_json(schedule)
        output.fields(
            [
                (key, schedule.get(key))
                for key in (
                    "name",
                    "preview",
                    "operation_type",
                    "cron",
                    "timezone",
                    "paused",
                    "missed_policy",
                    "keep_last",
                    "keep_days",
                    "next",
                    "id",
                )
            ]
        )


@schedules_app.command("create")
def schedules_create(
    kind: str,
    name: str,
    operation: str,
    cron: Annotated[str, typer.Option(help='e.g. "0 2 * * *" (every day at 02:00).')],
    title: Annotated[str, typer.Option("--name", help="What it is for.")] = "",
    timezone: Annotated[str, typer.Option(help="IANA zone, e.g. Europe/Paris.")] = "UTC",
    missed: Annotated[str, typer.Option(help="run_once or skip.")] = "run_once",
    keep_last: Annotated[int | None, typer.Option(help="Retention: newest N archives.")] = None,
    keep_days: Annotated[int | None, typer.Option(help="Retention: archives of N days.")] = None,
    values: SetOpt = None,
    json: JsonOpt = False,
) -> None:
    """Run OPERATION on the entity on a cron: `aegir schedules create site x.com backup
    --cron "0 2 * * *" --timezone Europe/Paris --keep-last 7`."""
    with server() as api:
        op = _operation(api, kind, name, operation)
        body: dict[str, Any] = {
            "name": title or f"{operation} of {name}",
            "cron": cron,
            "timezone": timezone,
            "missed_policy": missed,
            "operation_id": op["id"],
            "values": parse_sets(values or [], nested=True),
        }
        body |= {k: v for k, v in (("keep_last", keep_last), ("keep_days", keep_days)) if v}
        made = api.post("/api/v1/schedules", body)
        if json:
            return output.as_json(made)
        output.console.print(f"schedule {made['id']} created: {made['preview']}")


def _schedule_move(schedule_id: str, move: str, json: bool) -> None:
    with server() as api:
        if move == "delete":
            api.call("DELETE", f"/api/v1/schedules/{schedule_id}")
            answer: Any = {"deleted": schedule_id}
        else:
            answer = api.post(f"/api/v1/schedules/{schedule_id}/{move}")
        if json:
            return output.as_json(answer)
        output.console.print(
            f"schedule {schedule_id}: {move}d"
            if move != "delete"
            else f"schedule {schedule_id} deleted"
        )


@schedules_app.command("pause")
def schedules_pause(schedule_id: str, json: JsonOpt = False) -> None:
    """Stop firing (each slot is recorded as skipped while paused)."""
    _schedule_move(schedule_id, "pause", json)


@schedules_app.command("resume")
def schedules_resume(schedule_id: str, json: JsonOpt = False) -> None:
    """Fire again from the next slot."""
    _schedule_move(schedule_id, "resume", json)


@schedules_app.command("delete")
def schedules_delete(schedule_id: str, json: JsonOpt = False) -> None:
    """Delete a schedule (its runs stay in the history)."""
    _schedule_move(schedule_id, "delete", json)


@schedules_app.command("slots")
def schedules_slots(
    schedule_id: str,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    json: JsonOpt = False,
) -> None:
    """Each slot: fired (with its run), skipped or missed, and why."""
    with server() as api:
        page = api.get(f"/api/v1/schedules/{schedule_id}/slots", limit=limit)
        columns = [("slot_at", "SLOT"), ("outcome", "OUTCOME"), ("run_id", "RUN"), ("note", "NOTE")]
        output.listing(page, columns, json=json)


# --- batches -----------------------------------------------------------------------------


@batches_app.command("list")
def batches_list(
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    json: JsonOpt = False,
) -> None:
    """Batches you can see, newest first."""
    with server() as api:
        page = api.get("/api/v1/batches", limit=limit)
        columns = [
            ("id", "BATCH"),
            ("kind", "KIND"),
            ("operation", "OPERATION"),
            ("status", "STATUS"),
            ("summary_text", "SUMMARY"),
        ]
        output.listing(page, columns, json=json)


@batches_app.command("show")
def batches_show(
    batch_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until it ends.")] = False,
    json: JsonOpt = False,
) -> None:
    """A batch and each item's status; with --follow, until it ends (exit 0 only if it
    succeeded)."""
    with server() as api:
        batch = _show_batch(api, batch_id, follow, json)
    if follow and batch["status"] != "succeeded":
        raise typer.Exit(1)


def _show_batch(api: Api, batch_id: str, follow: bool, json: bool) -> dict[str, Any]:
    shown: dict[str, str] = {}
    while True:
        batch: dict[str, Any] = api.get(f"/api/v1/batches/{batch_id}")
        if follow and not json:
            for item in batch["items"]:
                if shown.get(item["id"]) != item["status"]:
                    shown[item["id"]] = item["status"]
                    output.errors.print(f"▸ {item['entity_name']}: {item['status']}")
        if not follow or batch["status"] in FINAL_BATCH:
            break
        time.sleep(1.0)
    columns = [
        ("entity_name", "ENTITY"),
        ("status", "STATUS"),
        ("reason", "WHY"),
        ("run_id", "RUN"),
    ]
    summary = batch.get("summary_text") or batch["counts"]
    output.listing(batch, columns, json=json, footer=f"batch {batch['status']}: {summary}")
    return batch


@batches_app.command("run")
def batches_run(
    kind: str,
    operation: str,
    names: Annotated[
        list[str] | None, typer.Option("--entity", "-e", help="An entity by name; repeat it.")
    ] = None,
    where: Annotated[
        str | None, typer.Option(help="ROLE=NAME: every entity referencing NAME, e.g. platform=p1.")
    ] = None,
    state: Annotated[str | None, typer.Option(help="With --where: only in this state.")] = None,
    values: SetOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, max=100)] = 2,
    max_failures: Annotated[int | None, typer.Option(min=1, help="Stop after N failed.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until it ends.")] = False,
    json: JsonOpt = False,
) -> None:
    """Run OPERATION over many: `aegir batches run site verify --where platform=p1`."""
    with server() as api:
        kind_type = api.kind(kind)
        body: dict[str, Any] = {
            "kind": kind_type["name"],
            "operation": operation,
            "values": parse_sets(values or [], nested=True),
            "concurrency": concurrency,
            "max_failures": max_failures,
        }
        if names and where:
            raise ApiError(422, "give --entity names or --where, not both")
        if names:
            body["ids"] = [api.entity(kind_type, name)["id"] for name in names]
        elif where:
            role, _, target = where.partition("=")
            reference = kind_type["references"].get(role)
            if reference is None or not target:
                roles = ", ".join(kind_type["references"]) or "none"
                raise ApiError(422, f"--where {where!r}: expected ROLE=NAME, ROLE one of: {roles}")
            target_id = api.entity(api.kind(reference["kind"]), target)["id"]
            body["filter"] = {"role": role, "target": target_id, "state": state}
        else:
            raise ApiError(422, "give --entity NAME (repeat it) or --where ROLE=NAME")
        batch = api.post("/api/v1/batches", body)
        if not follow:
            if json:
                return output.as_json(batch)
            output.console.print(
                f"batch {batch['id']} {batch['status']}; follow it with "
                f"`aegir batches show {batch['id']} --follow`"
            )
            return
        ended = _show_batch(api, str(batch["id"]), True, json)
    if ended["status"] != "succeeded":
        raise typer.Exit(1)


@batches_app.command("cancel")
def batches_cancel(batch_id: str, json: JsonOpt = False) -> None:
    """Cancel what has not started; ask running items to stop."""
    with server() as api:
        batch = api.post(f"/api/v1/batches/{batch_id}/cancel")
        if json:
            return output.as_json(batch)
        output.console.print(f"batch {batch_id} {batch['status']}")


# --- notifications -----------------------------------------------------------------------


@notifications_app.command("list")
def notifications_list(json: JsonOpt = False) -> None:
    """Your teams' notification targets."""
    with server() as api:
        page = api.get("/api/v1/notification-targets", limit=200)
        columns = [
            ("name", "NAME"),
            ("kind", "KIND"),
            ("url", "URL"),
            ("addresses", "TO"),
            ("statuses", "ON"),
            ("enabled", "ENABLED"),
            ("id", "ID"),
        ]
        output.listing(page, columns, json=json)


@notifications_app.command("show")
def notifications_show(target_id: str, json: JsonOpt = False) -> None:
    """A target (its secret is never shown)."""
    with server() as api:
        target = api.get(f"/api/v1/notification-targets/{target_id}")
        if json:
            return output.as_json(target)
        output.fields(sorted(target.items()))


@notifications_app.command("test")
def notifications_test(target_id: str, json: JsonOpt = False) -> None:
    """Send a test delivery now; prints how the receiver answered."""
    with server() as api:
        answer = api.post(f"/api/v1/notification-targets/{target_id}/test")
        if json:
            return output.as_json(answer)
        tries = answer.get("tries") or [{}]
        output.fields(
            [("state", answer["state"]), ("attempts", answer["attempts"]), ("last try", tries[-1])]
        )


@notifications_app.command("deliveries")
def notifications_deliveries(
    target_id: str,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    json: JsonOpt = False,
) -> None:
    """The target's delivery log: each delivery, its attempts and codes."""
    with server() as api:
        page = api.get(f"/api/v1/notification-targets/{target_id}/deliveries", limit=limit)
        columns = [
            ("run_id", "RUN"),
            ("event", "EVENT"),
            ("state", "STATE"),
            ("attempts", "ATTEMPTS"),
            ("created_at", "AT"),
        ]
        output.listing(page, columns, json=json)


def register(root: typer.Typer) -> None:
    root.add_typer(schedules_app, name="schedules")
    root.add_typer(batches_app, name="batches")
    root.add_typer(notifications_app, name="notifications")
