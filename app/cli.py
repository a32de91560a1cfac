"""The ``aegir`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from app.config import PROJECT_ROOT, Settings, get_settings


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
    from app.catalog.registry import get_catalog
    from app.db import create_engine, create_sessionmaker, session_scope
    from app.dispatch.entities import sync_graphs

    engine = create_engine(settings.database_url)
    try:
        async for session in session_scope(create_sessionmaker(engine)):
            return await sync_graphs(session, get_catalog())
    finally:
        await engine.dispose()
    return 0


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run("app.main:app", host=settings.host, port=settings.port, log_level="info")


def run_embedded(settings: Settings) -> None:
    """Everything on one machine: our own Redis server, the schema, the API."""
    from app.redis import RedisServer

    redis = (
        RedisServer(settings.redis_url, settings.var_dir / "redis")
        if settings.redis_embedded
        else None
    )
    # Ctrl-C and SIGTERM both end in a clean stop of every process we started.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if redis is not None:
            redis.start()
            print(f"aegir: redis-server on {redis.host}:{redis.port}", file=sys.stderr)
        migrate(settings)
        print(f"aegir: serving http://{settings.host}:{settings.port}/", file=sys.stderr)
        serve(settings)
    except KeyboardInterrupt:
        pass
    finally:
        if redis is not None:
            redis.stop()
        print("aegir: stopped", file=sys.stderr)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aegir", description="Aegir hosting control plane")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start Redis, migrate and serve: the embedded default")
    commands.add_parser("serve", help="serve the API and dashboard alone")
    commands.add_parser(
        "migrate", help="upgrade the database schema, and give entities what new plugins add"
    )
    commands.add_parser("catalog", help="list entity kinds, operations and actions")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "run":
        run_embedded(settings)
    elif args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "catalog":
        show_catalog()
