"""The remote CLI on a real site: create it, install and verify with --follow (the log and
the run's exit status), get a login link; --json answers parse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.hosting import Hosting
from tests.fixtures.services import clean_env

AEGIR = str(Path(sys.executable).parent / "aegir")


def test_a_site_from_the_command_line(hosting: Hosting, tmp_path: Path) -> None:
    env = clean_env(AEGIR_CLIENT_CONFIG=str(tmp_path / "client.json"), COLUMNS="200")

    def aegir(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([AEGIR, *args], env=env, capture_output=True, text=True,
                              timeout=300, check=False)  # fmt: skip
        assert done.returncode == code, f"aegir {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done

    aegir("login", hosting.stack.base_url, "--token", hosting.stack.token)
    platform = hosting.platform("cli-drupal", flavor="drupal")
    made = json.loads(
        aegir(
            "site",
            "create",
            "cli.example.test",
            "--ref",
            f"platform={platform['name']}",
            "--ref",
            "db_server=localhost",
            "--json",
        ).stdout
    )
    assert made["references"]["platform"]["id"] == platform["id"]

    values = ["database.engine=mariadb", "database.db_password=cli-pass-1234",
              "install.profile=minimal"]  # fmt: skip
    sets = [arg for value in values for arg in ("--set", value)]
    install = aegir("run", "site", "cli.example.test", "install", "--follow", *sets)
    assert "PLAY RECAP" in install.stdout
    assert "▸ install: succeeded" in install.stderr

    verify = aegir("run", "site", "cli.example.test", "verify", "--follow")
    assert "PLAY RECAP" in verify.stdout and "failed=0" in verify.stdout
    assert verify.stderr.splitlines()[-1].endswith("succeeded")

    link = aegir("action", "site", "cli.example.test", "login").stdout.strip()
    assert link.startswith("http://cli.example.test/user/reset/")
    shown = json.loads(aegir("site", "show", "cli.example.test", "--json").stdout)
    assert shown["state"] == "enabled"
    runs = json.loads(aegir("runs", "list", "--json").stdout)
    assert {"install", "verify"} <= {run["operation_type"] for run in runs["items"]}
