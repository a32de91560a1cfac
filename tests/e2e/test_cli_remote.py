"""The remote CLI as an operator uses it from a laptop: only HTTP and websockets to a running
stack, with the token ``aegir login`` kept."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import clean_env
from tests.fixtures.stack import Stack, wait_for

AEGIR = str(Path(sys.executable).parent / "aegir")


@dataclass
class Cli:
    env: dict[str, str]

    def __call__(
        self, *args: str, code: int = 0, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [AEGIR, *args], env=self.env, input=stdin, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == code, f"aegir {' '.join(args)} -> {result.returncode}:\n" + (
            result.stdout + result.stderr
        )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def cli(live: Stack, tmp_path: Path) -> Iterator[Cli]:
    config = tmp_path / "config" / "client.json"
    tool = Cli(clean_env(AEGIR_CLIENT_CONFIG=str(config), COLUMNS="200"))
    said = tool("login", live.base_url, "--token", live.token).stdout
    assert "logged in" in said and "admin" in said
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert live.token in config.read_text()
    yield tool


def test_without_a_login_it_says_what_to_do(tmp_path: Path) -> None:
    tool = Cli(clean_env(AEGIR_CLIENT_CONFIG=str(tmp_path / "none.json")))
    said = tool("testapp", "list", code=2).stderr
    assert "aegir login URL" in said


def test_a_wrong_token_is_refused_at_login(live: Stack, tmp_path: Path) -> None:
    tool = Cli(clean_env(AEGIR_CLIENT_CONFIG=str(tmp_path / "c.json")))
    said = tool("login", live.base_url, "--token", "aegir_not-a-token", code=1).stderr
    assert "401" in said
    assert not (tmp_path / "c.json").exists()


def test_entities_are_created_listed_shown_changed_and_deleted(cli: Cli) -> None:
    made = cli.json("testapp", "create", "cli-crud")
    assert made["name"] == "cli-crud"
    listed = cli.json("testapp", "list", "--name", "cli-crud")
    assert [item["name"] for item in listed["items"]] == ["cli-crud"]
    table = cli("testapp", "list", "--name", "cli-crud").stdout
    assert "cli-crud" in table and made["id"] in table
    shown = cli("testapp", "show", "cli-crud").stdout
    assert "noop" in shown and "probe" in shown  # its operations
    cli("testapp", "change", "cli-crud", "--rename", "cli-crud-2")
    assert cli.json("testapp", "show", "cli-crud-2")["id"] == made["id"]
    cli("testapp", "delete", "cli-crud-2", "--yes")
    said = cli("testapp", "show", "cli-crud-2", code=1).stderr
    assert "no testapp named 'cli-crud-2'" in said


def test_a_plugins_kind_and_a_missing_kind(cli: Cli) -> None:
    assert "items" in cli.json("cache_server", "list")
    said = cli("gadget", "list", code=1).stderr
    assert "no entity kind 'gadget'" in said and "site" in said


def test_run_follow_prints_the_log_and_task_progress_and_exits_with_the_run(cli: Cli) -> None:
    cli("testapp", "create", "cli-follow")
    done = cli("run", "testapp", "cli-follow", "noop", "--set", "noop.lines=5", "--follow")
    assert done.stdout.splitlines() == [f"line {n}" for n in range(1, 6)]
    # How each task ended (its start too, when the websocket was there to hear it).
    assert "▸ noop: succeeded" in done.stderr
    assert "succeeded" in done.stderr.splitlines()[-1]
    failed = cli("run", "testapp", "cli-follow", "noop", "--set", "noop.lines=1",
                 "--set", "noop.exit_code=4", "--follow", code=4)  # fmt: skip
    assert "failed" in failed.stderr.splitlines()[-1]


def test_following_resumes_after_a_given_line(cli: Cli) -> None:
    cli("testapp", "create", "cli-resume")
    run = cli.json("run", "testapp", "cli-resume", "noop", "--set", "noop.lines=8")
    assert run["status"] == "queued"
    rest = cli("runs", "follow", run["id"], "--after", "5")
    assert rest.stdout.splitlines() == ["line 6", "line 7", "line 8"]
    whole = cli("runs", "log", run["id"]).stdout.splitlines()
    assert whole == [f"line {n}" for n in range(1, 9)]


def test_bad_values_name_the_field(cli: Cli) -> None:
    cli("testapp", "create", "cli-bad")
    said = cli("run", "testapp", "cli-bad", "noop", "--set", "noop.lines=many", code=1).stderr
    assert "422" in said and "values.noop.lines" in said
    said = cli("run", "testapp", "cli-bad", "noop", "--set", "lines=3", code=1).stderr
    assert "task.field=value" in said
    said = cli("run", "testapp", "cli-bad", "nosuch", code=1).stderr
    assert "no operation 'nosuch'" in said and "noop" in said


def test_an_action_prints_its_link(cli: Cli) -> None:
    cli("testapp", "create", "cli-action")
    said = cli("action", "testapp", "cli-action", "noop").stdout.strip()
    assert said.startswith("http") and said.endswith("/user/reset/1/one-time-token")


def test_runs_are_listed_shown_and_cancelled(cli: Cli, live: Stack) -> None:
    cli("testapp", "create", "cli-cancel")
    run = cli.json("run", "testapp", "cli-cancel", "noop", "--set", "noop.lines=1",
                   "--set", "noop.sleep=300")  # fmt: skip
    with live.client() as http:
        wait_for(lambda: live.full_log(http, run["id"]), "the run's first line")
    listed = cli.json("runs", "list", "--status", "running")
    assert run["id"] in [item["id"] for item in listed["items"]]
    follower = subprocess.Popen(
        [AEGIR, "runs", "follow", run["id"]], env=cli.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.5)  # let it connect; it must see the end either way
    assert cli.json("runs", "cancel", run["id"])["status"] in {"cancelling", "cancelled"}
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 130, out + err
    assert out.splitlines()[0] == "line 1"
    shown = cli("runs", "show", run["id"]).stdout
    assert "cancelled" in shown and "noop" in shown
