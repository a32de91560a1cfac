"""The ``aegir`` command."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from enum import StrEnum
from types import FrameType
from typing import Annotated, Any

import typer

from app.client import fleet
from app.client.commands import KindGroup, register
from app.config import PROJECT_ROOT, Settings, get_settings
from app.logs import configure, uvicorn_config


def migrate(settings: Settings) -> None:
    """Bring the database schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = settings.database_url
    command.upgrade(config, "head")
    added = asyncio.run(_sync_graphs(settings))
    if added:
        print(f"aegir: added {added} operations that installed plugins define", file=sys.stderr)


async def _sync_graphs(settings: Settings) -> int:
    from app.catalog.registry import catalog_with
    from app.db import create_engine, create_sessionmaker, session_scope
    from app.dispatch.entities import sync_graphs

    engine = create_engine(settings.database_url)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return await sync_graphs(session, catalog_with(tuple(settings.catalog_modules)))
    finally:
        await engine.dispose()
    return 0


async def _has_users(settings: Settings) -> bool:
    from app.db import create_engine, create_sessionmaker
    from app.entities.user import repository as users

    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await users.any_exists(session)
    finally:
        await engine.dispose()


def serve(settings: Settings, app: str = "app.main:app") -> None:
    """Serve ``app`` (module:attribute) with uvicorn, as ``aegir serve`` does."""
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=uvicorn_config(settings.log_format),
        # Longer than clients keep an idle connection (httpx: 5 s, the same as uvicorn's
        # default), so that the client, not the server, closes it: a request sent just
        # as the server closed would get no answer.
        timeout_keep_alive=30,
    )


def worker(settings: Settings) -> None:
    from workers.main import serve_worker

    _logging()
    _run_fast(serve_worker(settings))


def relay(settings: Settings) -> None:
    from relay.main import serve_relay

    _logging()
    _run_fast(serve_relay(settings))


def _run_fast(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop when it is installed (uvicorn[standard] brings it, and the API runs on
    it): the worker's and relay's Redis and database round trips cost less event-loop
    time, and libuv waits for the commands' processes itself (no thread per command)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _logging() -> None:
    configure(get_settings().log_format)


def run_embedded(settings: Settings) -> None:
    """Everything on one machine: our own Redis server, the schema, API, worker, relay."""
    from app.redis import RedisServer

    redis = None
    if settings.redis_embedded:
        redis = RedisServer(settings.redis_url, settings.var_dir / "redis")
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C and SIGTERM both end in a clean stop of every process we started.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if redis is not None:
            redis.start()
            print(f"aegir: redis-server on {redis.host}:{redis.port}", file=sys.stderr)
        migrate(settings)
        if not asyncio.run(_has_users(settings)):
            print(
                "aegir: no users yet. Create the first admin in another terminal:\n"
                "  .venv/bin/aegir user create --admin --team ops YOUR_NAME",
                file=sys.stderr,
            )
        for name in ("relay", "worker", "serve"):
            children.append(subprocess.Popen([sys.executable, "-m", "app.cli", name]))
        print(f"aegir: serving http://{settings.host}:{settings.port}/", file=sys.stderr)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        _stop_children(children)
        if redis is not None:
            redis.stop()
        print("aegir: stopped", file=sys.stderr)


def _stop_children(children: list[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def show_catalog() -> None:
    from app.catalog.registry import get_catalog

    catalog = get_catalog()
    for kind in catalog.kinds.values():
        print(f"{kind.label} ({kind.plural})")
        for op in kind.operations.values():
            tasks = ", ".join(f"{key}:{kind.tasks[key]}" for key in op.steps)
            print(f"  {op.name:10} {tasks}{'  [destructive]' if op.destructive else ''}")
        for action in kind.actions.values():
            print(f"  {action.name:10} action: {kind.tasks[action.task]}")
    if catalog.plugins:
        print("plugins: " + ", ".join(catalog.plugins))


async def _accounts(settings: Settings, command: str, **args: Any) -> None:
    from datetime import timedelta

    from app.db import create_engine, create_sessionmaker, session_scope
    from app.dispatch import accounts
    from app.entities.team import repository as teams
    from app.entities.team.models import Role
    from app.entities.user import repository as users
    from app.errors import AegirError

    engine = create_engine(settings.database_url)
    actor = "cli"
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            if command == "user":
                user = await accounts.create_user(
                    session,
                    actor,
                    args["username"],
                    _password(args["password_stdin"]),
                    args["admin"],
                )
                if args["team"]:
                    team = await teams.by_name(session, args["team"])
                    if team is None:
                        team = await accounts.create_team(session, actor, args["team"])
                    await accounts.set_member(session, actor, team.id, user.id, Role(args["role"]))
                print(f"aegir: user {user.username} created", file=sys.stderr)
            elif command == "team":
                await accounts.create_team(session, actor, args["name"])
                print(f"aegir: team {args['name']} created", file=sys.stderr)
            elif command == "token":
                owner = await users.by_username(session, args["username"])
                if owner is None:
                    raise SystemExit(f"aegir: no user named {args['username']}")
                lifetime = timedelta(days=args["days"])
                _row, token = await accounts.create_token(
                    session, actor, owner, args["name"], lifetime
                )
                print(token)
    except AegirError as error:
        raise SystemExit(f"aegir: {error.message}") from None
    finally:
        await engine.dispose()


def _password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit("aegir: the passwords differ")
    return first


class RoleName(StrEnum):
    admin = "admin"
    operator = "operator"
    viewer = "viewer"


cli = typer.Typer(
    cls=KindGroup,
    no_args_is_help=True,
    help="Aegir hosting control plane. Server commands start its processes on this machine; "
    "the others talk to a server over HTTP (`aegir login URL` first).",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(no_args_is_help=True, help="Users (on this machine's database).")
team_app = typer.Typer(no_args_is_help=True, help="Teams (on this machine's database).")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (on this machine's database).")
cli.add_typer(user_app, name="user")
cli.add_typer(team_app, name="team")
cli.add_typer(token_app, name="token")


@cli.command("up")
def up_command() -> None:
    """The embedded default: Redis, migrations, then API, worker and relay."""
    run_embedded(get_settings())


@cli.command("serve")
def serve_command() -> None:
    """Serve the API and dashboard alone."""
    serve(get_settings())


@cli.command("worker")
def worker_command() -> None:
    """Run operations and actions from the queue."""
    worker(get_settings())


@cli.command("relay")
def relay_command() -> None:
    """Store run events; settle runs whose worker died; enqueue what Redis missed."""
    relay(get_settings())


@cli.command("migrate")
def migrate_command() -> None:
    """Upgrade the database schema, and give entities what new plugins add."""
    migrate(get_settings())


@cli.command("catalog")
def catalog_command() -> None:
    """List this machine's entity kinds, operations and actions."""
    show_catalog()


@user_app.command("create")
def user_create(
    username: str,
    admin: Annotated[bool, typer.Option("--admin", help="A site admin: manages teams.")] = False,
    team: Annotated[str | None, typer.Option(help="Add to this team (made if missing).")] = None,
    role: Annotated[RoleName, typer.Option(help="The role in --team.")] = RoleName.admin,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password.")
    ] = False,
) -> None:
    """Create a user (the first: --admin)."""
    asyncio.run(
        _accounts(
            get_settings(),
            "user",
            username=username,
            admin=admin,
            team=team,
            role=role.value,
            password_stdin=password_stdin,
        )
    )


@team_app.command("create")
def team_create(name: str) -> None:
    """Create a team."""
    asyncio.run(_accounts(get_settings(), "team", name=name))


@token_app.command("create")
def token_create(
    username: str,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[int, typer.Option(min=1, help="Days until it expires.")] = 90,
) -> None:
    """Create an API token for a user (printed once)."""
    asyncio.run(_accounts(get_settings(), "token", username=username, name=name, days=days))


register(cli, bare_run=lambda: run_embedded(get_settings()))
fleet.register(cli)


def main(argv: Sequence[str] | None = None) -> None:
    cli(args=list(argv) if argv is not None else None, prog_name="aegir")


if __name__ == "__main__":
    main()
