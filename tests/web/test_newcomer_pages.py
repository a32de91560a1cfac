"""What a newcomer meets, without a browser: fields shown only where they apply, what
cannot run saying why, a failed action in words, and an entity moved between teams."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.catalog.builtin.server import ServerFields
from app.db import session_scope
from app.dispatch import accounts
from app.dispatch.actions import failure_message
from app.entities.team.models import Role, Team
from app.entities.user.models import User
from app.web import forms
from tests.fixtures.accounts import api_client, make_account
from tests.fixtures.factories import make_graph

SSH = {"fields.ssh_user", "fields.ssh_port", "fields.python"}


def _hidden(current: dict[str, str]) -> set[str]:
    return {w.name for w in forms.widgets("fields", ServerFields, current) if w.hidden}


def test_the_ssh_fields_apply_only_to_an_ssh_connection() -> None:
    assert _hidden({"connection": "local", "hostname": "localhost"}) == SSH
    assert _hidden({"connection": "ssh", "hostname": "web1"}) == set()
    assert _hidden({}) == set()  # ssh is the default
    ssh_user = next(w for w in forms.widgets("fields", ServerFields, {}) if w.name in SSH)
    assert ssh_user.applies_when == {"fields.connection": ["ssh"]}


ANSIBLE_FAILURE = [
    "\x1b[0;32mPLAY [site_login] *****\x1b[0m",
    "TASK [site_login : Ask drush for a link] *****",
    '\x1b[0;31mfatal: [web1]: FAILED! => {"changed": true, "msg": "non-zero return code", '
    '"rc": 1, "stderr": " [error]  Drupal is not installed.\\n"}\x1b[0m',
    "PLAY RECAP *****",
    "web1 : ok=1 changed=0 unreachable=0 failed=1 skipped=0",
]


def test_a_failed_playbook_is_told_by_its_failing_task_in_words() -> None:
    assert failure_message(ANSIBLE_FAILURE, []) == "[error]  Drupal is not installed."
    msg = ['fatal: [h]: FAILED! => {"changed": false, "msg": "No such site"}']
    assert failure_message(msg, []) == "No such site"


def test_other_commands_are_told_by_their_last_lines_without_colour_codes() -> None:
    said = failure_message(["\x1b[1mworking\x1b[0m", "PLAY RECAP ***"], ["\x1b[31mno disk\x1b[0m"])
    assert said == "working / no disk"
    assert failure_message([], []) == "it printed no message"


async def test_login_before_install_is_refused_with_what_to_do(
    client: httpx.AsyncClient,
) -> None:
    site = (await make_graph(client))["site"]
    answer = await client.post(f"/api/v1/sites/{site['id']}/actions/login")
    assert answer.status_code == 409
    assert answer.json()["detail"] == "Log in: Install the site first"


async def test_an_entity_moves_only_to_a_team_its_mover_administers(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    server = (await make_graph(client))["server"]
    other = await make_account(app, "bob", team="web", role=Role.admin)
    patch = f"/api/v1/servers/{server['id']}"
    refused = await client.patch(patch, json={"team_id": str(other.team_id)})
    assert refused.status_code == 404  # like a reference: no team you administer
    assert refused.json()["detail"].startswith("team_id: no team")

    await make_account(app, "carol", team="web", role=Role.viewer)  # web exists: bob's
    async with api_client(app, other) as bob:
        hidden = await bob.patch(patch, json={"team_id": str(other.team_id)})
        assert hidden.status_code == 404  # bob cannot see ops' server at all
    # alice administers web too now: the move goes through.
    await _join(app, "alice", "web")
    moved = await client.patch(patch, json={"team_id": str(other.team_id)})
    assert moved.status_code == 200, moved.text
    assert moved.json()["team_id"] == str(other.team_id)
    async with api_client(app, other) as bob:
        assert (await bob.get(patch)).status_code == 200


async def _join(app: FastAPI, username: str, team: str) -> None:
    async with session_scope(app.state.sessionmaker) as session:
        user = await session.scalar(select(User).where(User.username == username))
        found = await session.scalar(select(Team).where(Team.name == team))
        assert user is not None and found is not None
        await accounts.set_member(session, "test", found.id, user.id, Role.admin)
