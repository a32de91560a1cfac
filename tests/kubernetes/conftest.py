"""The kmock emulator served over HTTP, a controller playing Kubernetes, and task contexts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest
from fastapi import FastAPI

from app.catalog.registry import Catalog, build_catalog
from app.dispatch.executor_input import typed_input
from executors import executor_for
from executors.base import TaskContext
from tests.catalog.samples import entity
from tests.fixtures.accounts import PASSWORD, Account
from tests.fixtures.kmock import Emulator, serve
from tests.fixtures.kmock_controller import Controller, controlling
from tests.kubernetes.samples import environment

RUN_ID = "0b7c6a52-5f0e-4d7b-9a63-3f1b5c2d9e10"
TOKEN = "a-service-account-token"


@pytest.fixture
async def dashboard(app: FastAPI, account: Account) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard as the ``client`` fixture's user sees it: signed in through /login."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aegir.test") as http:
        form = await http.get("/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found, "the sign-in page carries a CSRF token"
        data = {"username": account.username, "password": PASSWORD, "csrf_token": found[1]}
        assert (await http.post("/login", data=data)).status_code == 303
        yield http


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async for served in serve():
        yield served


@pytest.fixture
async def controller(emulator: Emulator) -> AsyncIterator[Controller]:
    async with controlling(emulator) as playing:
        yield playing


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("a-token-in-a-file\n")
    path.chmod(0o600)
    return path


@dataclass
class Recorder:
    """An ``Emitter`` that keeps what it is told."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    async def log(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    async def output(self, name: str, value: Any) -> None:
        self.outputs[name] = value

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


@dataclass
class Contexts:
    """Task contexts of the sample environment, its cluster being the emulator."""

    catalog: Catalog
    cluster: dict[str, Any]
    # The cluster's credentials task, as a worker's claim carries it (``add_credentials``).
    credentials: dict[str, Any] = field(default_factory=lambda: {"token": TOKEN})

    def plain(self, fields: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        plain = environment(fields, cluster_fields=self.cluster, **kwargs)
        plain["references"]["cluster"]["credentials"] = self.credentials
        return plain

    def cluster_entity(self, name: str = "prod-eu") -> dict[str, Any]:
        return {**entity("cluster", name, self.cluster), "credentials": self.credentials}

    def make(
        self,
        key: str,
        plain: dict[str, Any] | None = None,
        *,
        values: dict[str, dict[str, Any]] | None = None,
        outputs: dict[str, dict[str, Any]] | None = None,
        refs: dict[str, dict[str, Any]] | None = None,
        timeout: float = 10,
        attempt: int = 1,
    ) -> TaskContext:
        plain = plain or self.plain()
        kind = self.catalog.kinds[plain["kind"]]
        tasks: dict[str, dict[str, Any]] = {
            k: {
                "type": t,
                "values": (values or {}).get(k, {}),
                "outputs": (outputs or {}).get(k, {}),
                "refs": (refs or {}).get(k, {}),
            }
            for k, t in kind.tasks.items()
        }
        typed = typed_input(self.catalog, plain, tasks, key)
        secrets = tuple(
            str(v) for task in (values or {}).values() for n, v in task.items() if "password" in n
        ) + tuple(str(v) for v in self.credentials.values())
        return TaskContext(
            run_id=RUN_ID, attempt=attempt, key=key, task_type=tasks[key]["type"],
            values=typed.values, entity=typed.entity, tasks=typed.tasks,
            work_dir=Path("/nonexistent"), timeout=timeout, cancel_grace=1, secrets=secrets,
        )  # fmt: skip


@pytest.fixture
def contexts(emulator: Emulator) -> Contexts:
    return Contexts(build_catalog(plugins=False), {"api_url": str(emulator.servers[0].url)})


async def until(condition: Callable[[], bool], limit: float = 10) -> None:
    """Wait (bounded) until ``condition()`` holds: state kept by kmock has no event to await."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture
def cancel() -> asyncio.Event:
    return asyncio.Event()


NS = "aegir-acme-prod"  # the sample environment's namespace


def stored(emulator: Emulator, resource: str, name: str, namespace: str | None = NS) -> Any:
    """An object as kmock holds it now; ``None`` before it is created or once deleted."""
    key = (kmock.resource(resource), namespace, name)
    if key not in emulator.objects:
        return None
    found = emulator.objects[key]
    return None if found.deleted else found.raw


def image_of(deployment: dict[str, Any]) -> str:
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def run(
    contexts: Contexts, context: TaskContext, cancel: asyncio.Event | None = None
) -> tuple[int, Recorder]:
    """Run the context's task through ``executor_for``, as a worker does: code and record."""
    recorder = Recorder()
    task_type = contexts.catalog.tasks[context.task_type]
    code = await executor_for(task_type).run(context, recorder, cancel or asyncio.Event())
    return code, recorder
