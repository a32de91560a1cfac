"""The remote commands: ``aegir login``, ``aegir <kind> …``, ``aegir run``, ``aegir runs …``.

Every command talks only HTTP and websockets to the server that ``aegir login`` named,
and takes ``--json`` for scripts. Entity kinds come from the server's catalogue, plugins
included, so ``aegir cache_server list`` works wherever that plugin is installed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from app.client import config, output
from app.client.api import Api, ApiError, parse_sets
from app.client.follow import Follower

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the server's answer as JSON.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="A value (JSON or text); repeat it."),
]
KIND_NAME = re.compile(r"[a-z][a-z0-9_]*")


@contextmanager
def server() -> Iterator[Api]:
    """The saved server, and each failure said in one line with a non-zero exit."""
    api: Api | None = None
    try:
        api = Api(config.load())
        yield api
    except (ApiError, config.NotLoggedIn) as error:
        output.errors.print(f"aegir: {error}", highlight=False, markup=False)
        raise typer.Exit(2 if isinstance(error, config.NotLoggedIn) else 1) from None
    finally:
        if api is not None:
            api.close()


# --- entity kinds: `aegir <kind> list|show|create|change|delete` ---------------------------

kind_app = typer.Typer(
    no_args_is_help=True, help="Entities of this kind.", add_completion=False, rich_markup_mode=None
)


def _kind(ctx: typer.Context) -> str:
    parent = ctx.parent
    return str(parent.info_name) if parent is not None else ""


def _references(api: Api, kind: dict[str, Any], refs: list[str]) -> dict[str, str]:
    """``role=NAME`` into ``{role: id}``, each name looked up among its kind."""
    resolved: dict[str, str] = {}
    for pair in refs:
        role, sep, name = pair.partition("=")
        reference = kind["references"].get(role)
        if not sep or reference is None:
            roles = ", ".join(kind["references"]) or "none"
            raise ApiError(422, f"--ref {pair!r}: expected ROLE=NAME, with ROLE one of: {roles}")
        resolved[role] = api.entity(api.kind(reference["kind"]), name)["id"] if name else ""
    return resolved


@kind_app.command("list")
def list_entities(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only names containing this.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json: JsonOpt = False,
) -> None:
    """List the entities of this kind that you can see."""
    with server() as api:
        kind = api.kind(_kind(ctx))
        page = api.get(f"/api/v1/{kind['plural']}", name=name, limit=limit, offset=offset)
        columns = [
            ("name", "NAME"),
            ("state", "STATE"),
            ("latest_run.operation_type", "LAST RUN"),
            ("latest_run.status", "STATUS"),
            ("id", "ID"),
        ]
        output.listing(page, columns, json=json, noun=kind["plural"])


@kind_app.command("show")
def show_entity(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name or id.")],
    json: JsonOpt = False,
) -> None:
    """One entity: its fields, references and operations with their latest runs."""
    with server() as api:
        entity = api.entity(api.kind(_kind(ctx)), name)
        if json:
            return output.as_json(entity)
        _show_entity(entity)


def _show_entity(entity: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [
        ("name", entity["name"]),
        ("kind", entity["kind"]),
        ("state", entity.get("state")),
        ("id", entity["id"]),
    ]
    rows += [(f"fields.{key}", value) for key, value in entity.get("fields", {}).items()]
    for role, ref in (entity.get("references") or {}).items():
        rows.append((f"references.{role}", ref.get("name") if isinstance(ref, dict) else ref))
    output.fields(rows)
    operations = entity.get("operations") or []
    if operations:
        output.console.print()
        output.table(
            operations,
            [
                ("type", "OPERATION"),
                ("latest_run.status", "LAST RUN"),
                ("latest_run.id", "RUN"),
            ],
        )


@kind_app.command("create")
def create_entity(
    ctx: typer.Context,
    name: str,
    values: SetOpt = None,
    ref: Annotated[
        list[str] | None, typer.Option(metavar="ROLE=NAME", help="A reference; repeat it.")
    ] = None,
    team: Annotated[str | None, typer.Option(help="Owning team (name or id).")] = None,
    json: JsonOpt = False,
) -> None:
    """Create an entity (its operations come with it)."""
    with server() as api:
        kind = api.kind(_kind(ctx))
        body: dict[str, Any] = {
            "name": name,
            "fields": parse_sets(values or [], nested=False),
            "references": _references(api, kind, ref or []),
        }
        if team:
            body["team_id"] = api.team_id(team)
        entity = api.post(f"/api/v1/{kind['plural']}", body)
        if json:
            return output.as_json(entity)
        output.console.print(f"{kind['name']} {entity['name']} created ({entity['id']})")


@kind_app.command("change")
def change_entity(
    ctx: typer.Context,
    name: str,
    values: SetOpt = None,
    ref: Annotated[list[str] | None, typer.Option(metavar="ROLE=NAME")] = None,
    rename: Annotated[str | None, typer.Option(help="A new name.")] = None,
    json: JsonOpt = False,
) -> None:
    """Change fields, references or the name; what you leave out keeps its value."""
    with server() as api:
        kind = api.kind(_kind(ctx))
        entity = api.entity(kind, name)
        body: dict[str, Any] = {}
        if values:
            body["fields"] = parse_sets(values, nested=False)
        if ref:
            body["references"] = _references(api, kind, ref)
        if rename:
            body["name"] = rename
        if not body:
            raise ApiError(422, "nothing to change: give --set, --ref or --rename")
        changed = api.call("PATCH", f"/api/v1/{kind['plural']}/{entity['id']}", json=body)
        if json:
            return output.as_json(changed)
        output.console.print(f"{kind['name']} {changed['name']} changed")


@kind_app.command("delete")
def delete_entity(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json: JsonOpt = False,
) -> None:
    """Delete the record (the `delete` operation is what removes it from its servers)."""
    with server() as api:
        kind = api.kind(_kind(ctx))
        entity = api.entity(kind, name)
        if not yes and not typer.confirm(f"Delete the record of {kind['name']} {name}?"):
            raise typer.Exit(1)
        api.call("DELETE", f"/api/v1/{kind['plural']}/{entity['id']}")
        if json:
            return output.as_json({"deleted": entity["id"]})
        output.console.print(f"{kind['name']} {name} deleted")


class KindGroup(TyperGroup):
    """The top level: its own commands, and any other word is an entity kind's group."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        # ``Any``: typer 0.29 carries its own copy of click, whose types are private.
        command = super().get_command(ctx, cmd_name)
        if command is not None or not KIND_NAME.fullmatch(cmd_name):
            return command
        group = typer.main.get_command(kind_app)
        group.name = cmd_name
        group.help = f"{cmd_name} entities: list, show, create, change, delete."
        return group

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *config.remembered_kinds()]


# --- login, runs, actions ------------------------------------------------------------------


def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. https://aegir.example.com")],
    token: Annotated[
        str | None,
        typer.Option(envvar="AEGIR_TOKEN", help="An API token (asked for when left out)."),
    ] = None,
) -> None:
    """Keep the server URL and your token (in your config, readable by you only)."""
    if not re.match(r"https?://", url):
        output.errors.print("aegir: the URL starts with http:// or https://")
        raise typer.Exit(2)
    secret = token or typer.prompt("API token", hide_input=True)
    profile = config.Profile(url.rstrip("/"), secret)
    api = Api(profile)
    try:
        me = api.get("/api/v1/me")
        _ = api.catalog  # remembers the kinds for completion
    except ApiError as error:
        output.errors.print(f"aegir: {error}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    finally:
        api.close()
    path = config.save(profile)
    output.console.print(f"logged in to {profile.url} as {me['username']} (saved in {path})")


def logout() -> None:
    """Forget the saved server and token."""
    output.console.print("logged out" if config.forget() else "was not logged in")


def whoami(json: JsonOpt = False) -> None:
    """Who the saved token is, and its teams."""
    with server() as api:
        me = api.get("/api/v1/me")
        if json:
            return output.as_json(me)
        teams = ", ".join(f"{t.get('team_name', t.get('name'))} ({t['role']})" for t in me["teams"])
        output.console.print(f"{me['username']} at {api.profile.url}; teams: {teams or 'none'}")


def run_operation(
    kind: str,
    name: str,
    operation: str,
    values: SetOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show the log live.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm a destructive one.")] = False,
    json: JsonOpt = False,
) -> None:
    """Run an operation: `aegir run site example.com backup --follow`."""
    with server() as api:
        kind_type = api.kind(kind)
        entity = api.entity(kind_type, name)
        found = [op for op in entity.get("operations", []) if op["type"] == operation]
        if not found:
            names = ", ".join(op["type"] for op in entity.get("operations", []))
            raise ApiError(
                404, f"{kind_type['name']} {name} has no operation {operation!r} (it has: {names})"
            )
        op = found[0]
        if op["destructive"] and not yes and not json:
            typer.confirm(f"{op['label']} is destructive. Run it on {name}?", abort=True)
        elif op["destructive"] and not yes:
            raise ApiError(409, f"{operation} is destructive: add --yes")
        body = {"values": parse_sets(values or [], nested=True)}
        path = f"/api/v1/{kind_type['plural']}/{entity['id']}/operations/{operation}/runs"
        run = api.post(path, body)
        if not follow:
            if json:
                return output.as_json(run)
            output.console.print(
                f"run {run['id']} {run['status']}; follow it with `aegir runs follow {run['id']}`"
            )
            return
        _follow(api, run, 0, json)


def _follow(api: Api, run: dict[str, Any], after: int, json: bool) -> None:
    tasks = {task["position"]: task["task_key"] for task in run.get("tasks", [])}
    output.errors.print(f"run {run['id']}: {run['operation_type']}, {run['status']}", style="dim")
    follower = Follower(
        api.profile,
        str(run["id"]),
        tasks=tasks,
        last=after,
        stored_tasks=lambda: list(api.get(f"/api/v1/runs/{run['id']}")["tasks"]),
    )
    try:
        ending = follower.follow()
    except KeyboardInterrupt:
        output.errors.print(
            f"aegir: stopped following; the run goes on. Resume with "
            f"`aegir runs follow {run['id']} --after {follower.last}`"
        )
        raise typer.Exit(130) from None
    if json:
        output.as_json(
            {
                "id": run["id"],
                "status": ending.status,
                "exit_code": ending.exit_code,
                "last_seq": follower.last,
            }
        )
    else:
        why = f": {ending.error}" if ending.error else ""
        output.errors.print(f"run {run['id']} {ending.status}{why}", highlight=False)
    raise typer.Exit(ending.code)


def action(
    kind: str,
    name: str,
    action_name: Annotated[str, typer.Argument(metavar="ACTION", help="e.g. login")],
    json: JsonOpt = False,
) -> None:
    """Run a quick action and print its answer (`aegir action site example.com login`)."""
    with server() as api:
        kind_type = api.kind(kind)
        entity = api.entity(kind_type, name)
        result = api.post(f"/api/v1/{kind_type['plural']}/{entity['id']}/actions/{action_name}")
        if json:
            return output.as_json(result)
        if isinstance(result, dict) and set(result) == {"url"}:
            print(result["url"])  # plain, for $(aegir action site x login)
        else:
            output.fields(sorted(result.items()) if isinstance(result, dict) else [("", result)])


runs_app = typer.Typer(
    no_args_is_help=True, help="Runs: list, show, follow, log, cancel.", rich_markup_mode=None
)


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="Only runs of this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json: JsonOpt = False,
) -> None:
    """Runs you can see, newest first."""
    with server() as api:
        page = api.get("/api/v1/runs", status=status, limit=limit, offset=offset)
        columns = [
            ("id", "RUN"),
            ("operation_type", "OPERATION"),
            ("status", "STATUS"),
            ("exit_code", "EXIT"),
            ("requested_by", "BY"),
            ("created_at", "CREATED"),
        ]
        output.listing(page, columns, json=json, noun="runs")


@runs_app.command("show")
def runs_show(run_id: str, json: JsonOpt = False) -> None:
    """A run with its tasks."""
    with server() as api:
        run = api.get(f"/api/v1/runs/{run_id}")
        if json:
            return output.as_json(run)
        output.fields(
            [
                (key, run.get(key))
                for key in (
                    "id",
                    "operation_type",
                    "status",
                    "exit_code",
                    "error",
                    "requested_by",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "attempt",
                )
            ]
        )
        output.console.print()
        output.table(run["tasks"], [("task_key", "TASK"), ("status", "STATUS")])


@runs_app.command("follow")
def runs_follow(
    run_id: str,
    after: Annotated[int, typer.Option(min=0, help="Resume after this line.")] = 0,
    json: JsonOpt = False,
) -> None:
    """The run's log live, from line ``--after`` on; exits with the run's status."""
    with server() as api:
        _follow(api, api.get(f"/api/v1/runs/{run_id}"), after, json)


@runs_app.command("log")
def runs_log(
    run_id: str,
    after: Annotated[int, typer.Option(min=0)] = 0,
    json: JsonOpt = False,
) -> None:
    """The run's stored log (all of it, page by page)."""
    with server() as api:
        lines: list[dict[str, Any]] = []
        while True:
            page = api.get(f"/api/v1/runs/{run_id}/log", after=after, limit=10_000)
            lines.extend(page["lines"])
            if not page["lines"]:
                break
            after = page["next_after"]
        if json:
            return output.as_json(lines)
        for line in lines:
            print(("aegir: " if line["stream"] == "system" else "") + line["line"])


@runs_app.command("cancel")
def runs_cancel(run_id: str, json: JsonOpt = False) -> None:
    """Cancel a queued or running run."""
    with server() as api:
        run = api.post(f"/api/v1/runs/{run_id}/cancel")
        if json:
            return output.as_json(run)
        output.console.print(f"run {run['id']} {run['status']}")


def register(root: typer.Typer, bare_run: Callable[[], None]) -> None:
    """Add the remote commands to ``root`` (whose group class must be ``KindGroup``).

    ``bare_run``: what ``aegir run`` with no arguments does (the embedded system, as
    before ``aegir up`` had its name).
    """
    root.command("login")(login)
    root.command("logout")(logout)
    root.command("whoami")(whoami)
    root.command("action")(action)
    root.add_typer(runs_app, name="runs")

    @root.command("run", no_args_is_help=False)
    def run(
        kind: Annotated[str | None, typer.Argument(help="Entity kind, e.g. site.")] = None,
        name: Annotated[str | None, typer.Argument(help="Its name or id.")] = None,
        operation: Annotated[str | None, typer.Argument(help="e.g. verify.")] = None,
        values: SetOpt = None,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Show the log live.")] = False,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="Confirm a destructive one.")
        ] = False,
        json: JsonOpt = False,
    ) -> None:
        """Run an operation: `aegir run site example.com verify --follow`."""
        if kind is None:
            output.errors.print("aegir: starting the embedded system (`aegir up` from now on)")
            return bare_run()
        if name is None or operation is None:
            output.errors.print(
                "aegir: usage: aegir run KIND NAME OPERATION [--set task.field=value]"
            )
            raise typer.Exit(2)
        run_operation(kind, name, operation, values, follow, yes, json)
