"""Schemathesis against the real API: uvicorn in its own process, on SQLite and PostgreSQL.

Each test migrates a fresh database with ``alembic upgrade head``, makes a site admin
(also admin of team "ops") and an API token with the ``aegir`` command line, starts
``uvicorn app.main:app`` on a free port, creates a small graph of entities and accounts
with that token (so that the fuzzer reaches real rows and not only 404s), then runs the
``st`` command line twice against the saved ``/openapi.json``, which itself needs the
token:

* with ``Authorization: Bearer <token>``, and every check schemathesis has (``--checks
  all``): no 5xx, every answer matches its documented status, schema, content type and
  headers, undocumented methods answer 405 with ``Allow``, schema-valid input is accepted
  and invalid input refused, a deleted resource is gone and a created one can be read
  back. The one 5xx allowed is an action's documented 504: no worker runs here to answer
  it;
* with no token, and one check of our own: every operation but the public health ones
  answers 401 with ``WWW-Authenticate: Bearer`` (schemathesis still sends made-up
  bearer tokens and session cookies of its own: those are refused too).

``AEGIR_FUZZ_SEED`` and ``AEGIR_FUZZ_EXAMPLES`` change the seed and the examples per
operation of the first run.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.services import (
    alembic_upgrade,
    clean_env,
    create_database,
    free_port,
    run_aegir,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SEED = int(os.environ.get("AEGIR_FUZZ_SEED", "20261126"))
MAX_EXAMPLES = int(os.environ.get("AEGIR_FUZZ_EXAMPLES", "40"))
ANONYMOUS_EXAMPLES = 8
# Every check schemathesis has, with our own anonymous one left to the run without a
# token: the document and the server agree on statuses, bodies, headers and methods, 405
# with Allow, created resources are readable and deleted ones gone, schema-valid input is
# accepted and invalid input refused.
CHECKS = "all"
EXCLUDED_CHECKS = os.environ.get("AEGIR_FUZZ_EXCLUDE", "anonymous_is_refused")
# Where the document cannot state the whole rule, schema-valid input may still be a 422
# naming the field; only these operations, each for its reason:
# - a cron expression of the documented form that never fires, or whose range runs
#   backwards ("0 0 31 2 *", "5-3 * * * *"): cronsim's calendar, not a pattern; and a
#   time zone of the documented form that the tz database does not have ("Mars/Base");
# - a schedule's values, checked against the operation its operation_id names;
# - a batch's operation and values, checked against the kind it names (each a word of the
#   catalogue's enums), and its filter's role against that kind's references.
SEMANTIC_422 = [
    "GET /api/v1/cron-preview",
    "POST /api/v1/schedules",
    "PATCH /api/v1/schedules/{schedule_id}",
    "POST /api/v1/batches",
]

# Chance that a path id (or a reference in a create body) is one of the seeded rows
# rather than a generated one.
SEEDED = 0.8
USERNAME = "fuzz"
PASSWORD = "fuzz-password-long-enough"

# Loaded by both `st` runs through SCHEMATHESIS_HOOKS.
#
# CPython 3.11's ast.parse is not safe in two threads at once (python/cpython#106905,
# "AST constructor recursion depth mismatch"), and hypothesis parses source files to
# describe filters, from both st workers: one parse at a time keeps that from failing a
# run now and then.
#
# The anonymous run's one check: an operation the document makes public (`security: []`)
# is left to the other run (a method such a path does not have is the router's 405);
# everything else answers 401 whatever the method, as the gate answers before routing.
HOOKS = '''
import ast
import threading

import schemathesis

_parse = ast.parse
_parsing = threading.Lock()


def _parse_alone(*args, **kwargs):
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _parse_alone


@schemathesis.check
def anonymous_is_refused(ctx, response, case):
    """Without valid credentials, every operation that is not public answers 401."""
    request = f"{case.method} {case.formatted_path}"
    if case.operation.definition.raw.get("security") == []:
        if case.method.upper() != case.operation.method.upper():
            assert response.status_code == 405, f"{request} answered {response.status_code}"
        return None
    assert response.status_code == 401, f"{request} answered {response.status_code}, not 401"
    challenge = response.headers.get("www-authenticate")
    assert challenge == ["Bearer"], f"{request}: WWW-Authenticate is {challenge!r}, not Bearer"
    detail = response.json().get("detail")
    assert isinstance(detail, str) and detail, f"{request}: no detail in {response.text!r}"
    return None
'''


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
def server_env(fresh_database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of both the API server and the ``aegir`` commands run against it."""
    return clean_env(
        AEGIR_DATABASE_URL=fresh_database_url,
        AEGIR_REDIS_URL=redis_url,
        AEGIR_ENV="test",
        AEGIR_VAR_DIR=str(tmp_path),
    )


@pytest.fixture
def token(server_env: dict[str, str]) -> str:
    """A site admin, admin of team "ops" too, and an API token of theirs: made by the CLI."""
    run_aegir(
        server_env,
        "user", "create", USERNAME, "--admin", "--team", "ops", "--role", "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    lines = run_aegir(server_env, "token", "create", USERNAME, "--name", "fuzz", "--days", "1")
    assert len(lines.splitlines()) == 1, lines
    return lines.strip()


@pytest.fixture
def api_url(server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``uvicorn app.main:app`` in a process of its own; its base URL once /healthz answers."""
    port = free_port()
    argv = [str(BIN / "uvicorn"), "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=server_env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
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
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, _traceback(text)


def _traceback(text: str) -> str:
    """The first traceback in a log, whole: what a failure needs, not the log's tail."""
    lines = text[text.index("Traceback") :].splitlines()
    return "\n".join(lines[:80])


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


def _client(base: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, trust_env=False, timeout=10)


def _schema(base: str, token: str, path: Path) -> dict[str, Any]:
    """The OpenAPI document, which only a signed-in client may read; saved for ``st``."""
    with _client(base, None) as anonymous:
        for page in ("/openapi.json", "/docs", "/api/v1/me"):
            refused = anonymous.get(page)
            assert refused.status_code == 401, f"{page}: {refused.status_code} {refused.text}"
            assert refused.headers["www-authenticate"] == "Bearer", page
            assert isinstance(refused.json()["detail"], str), page
        assert anonymous.get("/healthz").status_code == 200
        home = anonymous.get("/")
        assert home.status_code == 303 and home.headers["location"].endswith("/login"), home
    with _client(base, token) as http:
        response = http.get("/openapi.json")
        assert response.status_code == 200, response.text
        me = http.get("/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["is_admin"] is True
    assert [(team["team"], team["role"]) for team in me.json()["teams"]] == [("ops", "admin")]
    document: dict[str, Any] = response.json()
    assert "bearerAuth" in document["components"]["securitySchemes"]
    path.write_text(json.dumps(document))
    return document


def _public(document: dict[str, Any]) -> list[tuple[str, str]]:
    """The (METHOD, path) of the operations that need no credentials: ``security: []``."""
    return sorted(
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == []
    )


def _seed(base: str, token: str) -> dict[str, Any]:
    """Two of each kind (one to keep, one the fuzzer may delete), a queued run, and spare
    accounts for the accounts routes (so the fuzzer never revokes or demotes its own)."""
    with _client(base, token) as http:

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
        spare_user = post("/api/v1/users", {"username": "spare", "password": PASSWORD})
        spare_team = post("/api/v1/teams", {"name": "spare"})
        spare_token = post("/api/v1/tokens", {"name": "spare"})
    kept = [servers[0], platforms[0], sites[0], caches[0]]
    return {
        "servers": servers,
        "platforms": platforms,
        "sites": sites,
        "cache-servers": caches,
        "operations": [op["id"] for entity in kept for op in entity["operations"]],
        "entities": [entity["id"] for entity in kept],
        "runs": [run["id"]],
        "users": [spare_user["id"]],
        "teams": [spare_team["id"]],
        "tokens": [spare_token["id"]],
    }


def _config(seeded: dict[str, Any], *, anonymous: bool = False) -> str:
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
    if not anonymous:
        # An action waits for a worker's answer, and none runs here: on a real site it
        # gets the documented 504 after the action's timeout (5 to 10 s). Its only input is the
        # id, so a few examples say all there is to say (schemathesis finds real ids by
        # itself). Without a token, it is refused at once like everything else.
        allowed = json.dumps(["2xx", "3xx", "4xx", 504])
        parts.append(
            "[[operations]]\n"
            'include-path-regex = "^/api/v1/[^/]+/[^/]+/actions/"\n'
            "generation = { max-examples = 2 }\n"
            # Waiting up to its timeout for a worker is what an action documents.
            f"checks = {{ not_a_server_error = {{ expected-statuses = {allowed} }}, "
            "max_response_time = 30 }\n"
        )
    accepted = json.dumps(["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"])
    parts.append(
        "[[operations]]\n"
        f"include-name = {json.dumps(SEMANTIC_422)}\n"
        f"checks = {{ positive_data_acceptance = {{ expected-statuses = {accepted} }} }}\n"
    )
    # Each operation type has its typed run route (the generic /operations/{id}/runs is
    # served but not documented): thirty-odd routes that read their bodies the same way,
    # so fewer examples each than the rest.
    parts.append(
        "[[operations]]\n"
        'include-path-regex = "^/api/v1/[^/]+/[^/]+/operations/[a-z_]+/runs$"\n'
        "generation = { max-examples = 6 }\n"
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
    # Members and tokens: the spare team, user and token, never the fuzzer's own (a
    # revoked token or a lost team would turn the rest of the run into 401s and 403s).
    for name in ("users", "teams", "tokens"):
        parts.append(values(name, seeded[name]))
    members = {"path.team_id": ("teams", SEEDED), "path.user_id": ("users", SEEDED)}
    parts.append(section('include-path-regex = "^/api/v1/teams/[^/]+/members/"', members))
    tokens = {"path.token_id": ("tokens", SEEDED)}
    parts.append(section('include-path-regex = "^/api/v1/tokens/"', tokens))
    return "\n".join(parts)


@dataclass
class Outcome:
    argv: list[str]
    result: subprocess.CompletedProcess[str]

    def output(self) -> str:
        return f"$ {' '.join(self.argv)}\n{self.result.stdout}\n{self.result.stderr}"


def _st(workdir: Path, config: str, options: list[str], env: dict[str, str]) -> Outcome:
    """``st run`` with this configuration; its caches go in a directory of its own."""
    workdir.mkdir()
    (workdir / "schemathesis.toml").write_text(config)
    argv = [str(BIN / "st"), "--config-file", str(workdir / "schemathesis.toml"), "--no-color"]
    argv += ["run", *options]
    started = time.monotonic()
    result = subprocess.run(
        argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    outcome = Outcome(argv, result)
    print(outcome.output())
    print(f"st took {time.monotonic() - started:.1f} s")
    return outcome


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_openapi_fuzz(api_url: str, token: str, tmp_path: Path) -> None:
    schema = tmp_path / "openapi.json"
    public = _public(_schema(api_url, token, schema))
    assert public == [("GET", "/healthz"), ("GET", "/readyz")]
    seeded = _seed(api_url, token)
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    env = clean_env(SCHEMATHESIS_HOOKS=str(hooks))
    common = [
        str(schema), "--url", api_url,
        "--seed", str(SEED),
        "--workers", "2",
        "--request-timeout", "20",
        "--suppress-health-check", "too_slow",
        "--generation-database", "none",
    ]  # fmt: skip
    failures: list[str] = []

    with_token = [
        *common,
        "--header", f"Authorization: Bearer {token}",
        "--checks", CHECKS,
        "--exclude-checks", EXCLUDED_CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
    ]  # fmt: skip
    signed_in = _st(tmp_path / "signed-in", _config(seeded), with_token, env)
    if signed_in.result.returncode != 0:
        failures.append(f"with a token, schemathesis exited with {signed_in.result.returncode}")
    with _client(api_url, token) as http:
        still = http.get("/api/v1/me")
    if still.status_code != 200:
        failures.append(f"the fuzzer lost its own token or account: {still.text}")

    without = [
        *common,
        "--checks", "anonymous_is_refused",
        "--max-examples", str(ANONYMOUS_EXAMPLES),
        "--warnings", "off",  # its "only 401 responses" is the point here
    ]  # fmt: skip
    anonymous = _st(tmp_path / "anonymous", _config(seeded, anonymous=True), without, env)
    if anonymous.result.returncode != 0:
        failures.append(f"with no token, schemathesis exited with {anonymous.result.returncode}")

    if failures:
        server_log = _tail(tmp_path / "uvicorn.log", 20_000)
        outputs = "\n".join(outcome.output() for outcome in (signed_in, anonymous))
        pytest.fail("\n".join(failures) + f"\n{outputs}\n{server_log}")
