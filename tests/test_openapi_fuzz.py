"""Schemathesis against the real API: uvicorn in its own process, on SQLite and PostgreSQL.

Each test migrates a fresh database with ``alembic upgrade head``, starts
``uvicorn app.main:app`` on a free port, creates a small graph of entities (so that
the fuzzer reaches real rows and not only 404s), then runs the ``st`` command line
against ``/openapi.json`` and expects it to exit 0.

The checks are the ones the API honestly passes: no 5xx, every answer matches its
documented schema and content type, undocumented methods answer 405, a deleted
resource is gone and a created one can be read back. The one 5xx allowed is an
action's documented 504: no worker runs here to answer it. ``AEGIR_FUZZ_SEED`` and
``AEGIR_FUZZ_EXAMPLES`` change the seed and the examples per operation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.services import alembic_upgrade, create_database, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SEED = int(os.environ.get("AEGIR_FUZZ_SEED", "20261126"))
MAX_EXAMPLES = int(os.environ.get("AEGIR_FUZZ_EXAMPLES", "40"))
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "content_type_conformance",
    "unsupported_method",
    "use_after_free",
    "ensure_resource_availability",
)
# Chance that a path id (or a reference in a create body) is one of the seeded rows
# rather than a generated one.
SEEDED = 0.8


def _clean_env(**values: str) -> dict[str, str]:
    """This environment without any AEGIR_* setting or proxy: only 127.0.0.1 is used."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AEGIR_") and key.lower() not in proxies
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(values)
    return env


def _tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of this test's own, migrated with ``alembic upgrade head``."""
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}"
    else:
        server: str = request.getfixturevalue("postgres_url")
        url = create_database(server, f"fuzz_{uuid.uuid4().hex[:12]}")
    alembic_upgrade(url)
    return url


@pytest.fixture
def api_url(fresh_database_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """``uvicorn app.main:app`` in a process of its own; its base URL once /healthz answers."""
    port = free_port()
    env = _clean_env(
        AEGIR_DATABASE_URL=fresh_database_url,
        AEGIR_REDIS_URL=redis_url,
        AEGIR_ENV="test",
        AEGIR_VAR_DIR=str(tmp_path),
    )
    argv = [str(BIN / "uvicorn"), "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, base, log)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Tracebacks the fuzzer did not see (say, in the lifespan) still fail the test.
    assert "Traceback" not in log.read_text(errors="replace"), _tail(log)


def _wait_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode}:\n{_tail(log)}")
            try:
                if http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"uvicorn did not answer /healthz in time:\n{_tail(log)}")


def _seed(base: str) -> dict[str, Any]:
    """Two of each kind (one to keep, one the fuzzer may delete), and a queued run."""
    with httpx.Client(base_url=base, trust_env=False, timeout=10) as http:

        def post(path: str, body: dict[str, Any], expected: int = 201) -> dict[str, Any]:
            response = http.post(path, json=body)
            assert response.status_code == expected, response.text
            data: dict[str, Any] = response.json()
            return data

        def server(name: str) -> dict[str, Any]:
            return post("/api/v1/servers", {"name": name, "fields": {"hostname": name}})

        servers = [server("seed1.example.com"), server("spare1.example.com")]
        keep_server = servers[0]["id"]
        platforms = [
            post(
                "/api/v1/platforms",
                {
                    "name": name,
                    "fields": {"root": f"/var/aegir/platforms/{name}"},
                    "references": {"server": keep_server},
                },
            )
            for name in ("seed-platform", "spare-platform")
        ]
        sites = [
            post(
                "/api/v1/sites",
                {
                    "name": name,
                    "references": {"platform": platforms[0]["id"], "db_server": keep_server},
                },
            )
            for name in ("seed.example.com", "spare.example.com")
        ]
        caches = [
            post("/api/v1/cache-servers", {"name": name, "references": {"server": keep_server}})
            for name in ("cache1.example.com", "cache2.example.com")
        ]
        install = next(op["id"] for op in sites[0]["operations"] if op["type"] == "install")
        run = post(
            f"/api/v1/operations/{install}/runs",
            {"values": {"install": {"site_name": "Seeded"}}},
            expected=202,
        )
    kept = [servers[0], platforms[0], sites[0], caches[0]]
    return {
        "servers": servers,
        "platforms": platforms,
        "sites": sites,
        "cache-servers": caches,
        "operations": [op["id"] for entity in kept for op in entity["operations"]],
        "entities": [entity["id"] for entity in kept],
        "runs": [run["id"]],
    }


def _config(seeded: dict[str, Any]) -> str:
    """A schemathesis.toml that draws path ids and references from the seeded rows."""

    def values(name: str, items: list[str]) -> str:
        return f"[dictionaries.{name}]\nvalues = {json.dumps(items)}\n"

    def section(match: str, parameters: dict[str, tuple[str, float]]) -> str:
        pairs = ", ".join(
            f'"{key}" = {{ dictionary = "{name}", probability = {chance} }}'
            for key, (name, chance) in parameters.items()
        )
        return f"[[operations]]\n{match}\nparameters = {{ {pairs} }}\n"

    # Filters of one [[operations]] entry: includes are OR-ed, excludes AND-ed.
    parts: list[str] = []
    for plural in ("servers", "platforms", "sites", "cache-servers"):
        keep, spare = seeded[plural]
        name = plural.replace("-", "_")
        parts.append(values(name, [keep["id"], spare["id"]]))
        parts.append(values(f"{name}_spare", [spare["id"]]))
        others = (
            f'include-path-regex = "^/api/v1/{plural}/"\n'
            'exclude-path-regex = "/actions/"\nexclude-method = "DELETE"'
        )
        parts.append(section(others, {"path.entity_id": (name, SEEDED)}))
        # DELETE only ever gets the spare one, so the kept rows stay for everything else.
        delete = f'include-name = "DELETE /api/v1/{plural}/{{entity_id}}"'
        parts.append(section(delete, {"path.entity_id": (f"{name}_spare", SEEDED)}))
    # An action waits for a worker's answer, and none runs here: on a real site it gets
    # the documented 504 after the action's timeout (5 s). Its only input is the id, so
    # a few examples say all there is to say (schemathesis finds real ids by itself).
    allowed = json.dumps(["2xx", "3xx", "4xx", 504])
    parts.append(
        "[[operations]]\n"
        'include-path-regex = "^/api/v1/[^/]+/[^/]+/actions/"\n'
        "generation = { max-examples = 2 }\n"
        f"checks = {{ not_a_server_error = {{ expected-statuses = {allowed} }} }}\n"
    )
    parts.append(values("operations", seeded["operations"]))
    parts.append(values("entities", seeded["entities"]))
    parts.append(values("runs", seeded["runs"]))
    operation_ids = {"path.operation_id": ("operations", SEEDED)}
    parts.append(section('include-path-regex = "^/api/v1/operations/"', operation_ids))
    parts.append(
        section('include-path-regex = "^/api/v1/runs/"', {"path.run_id": ("runs", SEEDED)})
    )
    run_filters = {"query.entity": ("entities", 0.5), "query.operation": ("operations", 0.5)}
    parts.append(section('include-path = "/api/v1/runs"', run_filters))
    references = {
        "body.references.server": ("servers", SEEDED),
        "body.references.db_server": ("servers", SEEDED),
        "body.references.platform": ("platforms", SEEDED),
    }
    creates = "include-name = " + json.dumps(
        [f"POST /api/v1/{plural}" for plural in ("platforms", "sites", "cache-servers")]
    )
    parts.append(section(creates, references))
    return "\n".join(parts)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_openapi_fuzz(api_url: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(_seed(api_url)))
    argv = [
        str(BIN / "st"),
        "--config-file", str(config),
        "--no-color",
        "run", f"{api_url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "2",
        "--request-timeout", "10",
        "--suppress-health-check", "too_slow",
        "--generation-database", "none",
    ]  # fmt: skip
    # The working directory takes schemathesis' and hypothesis' caches.
    result = subprocess.run(
        argv,
        cwd=tmp_path,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    output = f"$ {' '.join(argv)}\n{result.stdout}\n{result.stderr}"
    print(output)
    if result.returncode != 0:
        server_log = _tail(tmp_path / "uvicorn.log", 20_000)
        pytest.fail(f"schemathesis exited with {result.returncode}\n{output}\n{server_log}")
