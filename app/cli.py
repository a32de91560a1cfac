"""The ``aegir`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
import time
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


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run("app.main:app", host=settings.host, port=settings.port, log_level="info")


def worker(settings: Settings) -> None:
    from workers.main import serve_worker

    _logging()
    asyncio.run(serve_worker(settings))


def relay(settings: Settings) -> None:
    from relay.main import serve_relay

    _logging()
    asyncio.run(serve_relay(settings))


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


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


COMMANDS = {
    "run": "the embedded default: Redis, migrations, then API, worker and relay",
    "serve": "serve the API and dashboard alone",
    "worker": "run operations and actions from the queue",
    "relay": "store run events; settle runs whose worker died; enqueue what Redis missed",
    "migrate": "upgrade the database schema, and give entities what new plugins add",
    "catalog": "list entity kinds, operations and actions",
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aegir", description="Aegir hosting control plane")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        commands.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "run":
        run_embedded(settings)
    elif args.command == "serve":
        serve(settings)
    elif args.command == "worker":
        worker(settings)
    elif args.command == "relay":
        relay(settings)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "catalog":
        show_catalog()


if __name__ == "__main__":
    main()
