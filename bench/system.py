"""The system under test (the tests' process stack, run at its production settings),
the baseline arq workers, and a description of the machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench.client import Api
from tests.fixtures.services import alembic_upgrade
from tests.fixtures.stack import ROOT, Stack

# The test stack shortens leases, heartbeats and sweeps to exercise failures quickly;
# the bench measures what a user gets, so these go back to their defaults.
TEST_ONLY_SETTINGS = (
    "AEGIR_RUN_LEASE",
    "AEGIR_RUN_HEARTBEAT",
    "AEGIR_SWEEP_INTERVAL",
    "AEGIR_REQUEUE_AFTER",
    "AEGIR_CANCEL_GRACE",
    "AEGIR_RELAY_CLAIM_IDLE",
)


class BenchStack(Stack):
    """Redis, ``aegir serve``, ``aegir worker`` and ``aegir relay`` as real processes."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        for name in TEST_ONLY_SETTINGS:
            self.env.pop(name, None)
        self.redis_url = self.env["AEGIR_REDIS_URL"]

    @property
    def api(self) -> Api:
        """The API, as the admin user the stack creates once started (its token)."""
        return Api(self.base_url, self.ws_url, self.token)

    def _api_ready(self) -> bool:
        try:
            with self.api.http_sync(timeout=1) as http:
                return http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return self.api.http_sync()


class Database:
    """A fresh database to migrate: ``url`` (an empty database, say on a throwaway
    PostgreSQL server), else ``AEGIR_BENCH_DATABASE_URL``, else a SQLite file in a
    directory of its own (``sqlite=True``: that file whatever the environment says)."""

    def __init__(self, url: str | None = None, *, sqlite: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aegir-bench-db-"))
        own = f"sqlite+aiosqlite:///{self.root / 'aegir.sqlite3'}"
        self.url = own if sqlite else url or os.environ.get("AEGIR_BENCH_DATABASE_URL", own)

    @property
    def kind(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0]

    def migrate(self) -> None:
        alembic_upgrade(self.url)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class ArqWorkerProcess:
    """``bench.arq_worker`` on a queue of its own, in the stack's Redis."""

    def __init__(self, redis_url: str, queue: str, poll_delay: float, log: Path) -> None:
        self.queue = queue
        argv = [sys.executable, "-m", "bench.arq_worker", redis_url, queue, str(poll_delay)]
        with open(log, "ab") as out:  # the child keeps its own copy
            self.process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit} with uncommitted changes" if changed else commit


async def machine(redis: aioredis.Redis) -> dict[str, Any]:
    server = await redis.info("server")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "redis": str(server.get("redis_version", "unknown")),
        "os": f"{platform.system()} {platform.release()}",
        "code": code_version(),
    }
