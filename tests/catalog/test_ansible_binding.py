"""The built-in catalogue's tasks and the Ansible roles shipped for them; inventories."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog.registry import build_catalog
from app.catalog.types import AnsibleRole
from executors.ansible import ROLES_DIR, SshAccess
from executors.ansible.variables import db_identifier, inventory, variables
from executors.base import ExecutorUnavailable, TaskContext


def test_every_ansible_task_has_its_role() -> None:
    catalog = build_catalog(plugins=False)
    bound = {name for name, task in catalog.tasks.items() if isinstance(task.executor, AnsibleRole)}
    assert bound, "the built-in kinds run on Ansible"
    missing = [name for name in bound if not (ROLES_DIR / name / "tasks" / "main.yml").is_file()]
    assert missing == []


def _server(connection: str) -> dict[str, object]:
    return {
        "id": "s1",
        "kind": "server",
        "name": "web1.example.com",
        "fields": {
            "hostname": "10.0.0.5",
            "connection": connection,
            "ssh_user": "deploy",
            "ssh_port": 2222,
        },
        "references": {},
    }


def test_a_site_runs_on_its_platform_s_server_and_its_database_on_the_db_server() -> None:
    db = {**_server("ssh"), "name": "db1.example.com"}
    site = {
        "kind": "site",
        "name": "www.example.com",
        "fields": {},
        "references": {
            "platform": {"kind": "platform", "name": "p", "references": {"server": _server("ssh")}},
            "db_server": db,
        },
    }
    access = SshAccess(Path("/keys/id_ed25519"), Path("/keys/known_hosts"))
    found = inventory(site, access)["all"]["children"]
    assert found["target"]["hosts"] == {
        "web1.example.com": {
            "ansible_connection": "ssh",
            "ansible_host": "10.0.0.5",
            "ansible_user": "deploy",
            "ansible_port": 2222,
            "ansible_python_interpreter": "auto_silent",
            "ansible_ssh_private_key_file": "/keys/id_ed25519",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/keys/known_hosts",
        }
    }
    assert list(found["db"]["hosts"]) == ["db1.example.com"]


def test_a_local_server_runs_on_the_control_machine() -> None:
    hosts = inventory(_server("local"), SshAccess())["all"]["children"]["target"]["hosts"]
    assert hosts["web1.example.com"]["ansible_connection"] == "local"
    assert "ansible_host" not in hosts["web1.example.com"]


def test_database_names_come_from_the_domain() -> None:
    assert db_identifier("www.example.com") == "www_example_com"
    assert db_identifier("1st.example.com") == "s1st_example_com"
    assert len(db_identifier("a" * 60 + ".example.com")) == 32


def _site_context(files_path: str | None) -> TaskContext:
    server = {**_server("local"), "fields": {"connection": "local"}}
    platform = {"kind": "platform", "name": "p", "fields": {"root": "/srv/p"},
                "references": {"server": server}}  # fmt: skip
    site = {"kind": "site", "name": "www.example.com", "url": "http://www.example.com",
            "fields": {}, "references": {"platform": platform, "db_server": server}}  # fmt: skip
    tasks = {"files": {"type": "site_files", "values": {"files_path": files_path}, "outputs": {}}}
    return TaskContext(
        run_id="r", attempt=1, key="files", task_type="site_files", values={}, entity=site,
        tasks=tasks, work_dir=Path("/tmp"), timeout=10, cancel_grace=1,
    )  # fmt: skip


def test_every_path_a_site_writes_is_inside_its_own_directory() -> None:
    found = variables(_site_context(None))["site"]
    assert found["dir"] == "/srv/p/sites/www.example.com"
    assert found["files_dir"] == "/srv/p/sites/www.example.com/files"
    assert found["settings_file"] == "/srv/p/sites/www.example.com/settings.php"
    assert found["vhost_file"] == "/etc/nginx/sites-enabled/www.example.com.conf"
    inside = variables(_site_context("sites/www.example.com/uploads"))["site"]
    assert inside["files_dir"] == "/srv/p/sites/www.example.com/uploads"
    with pytest.raises(ExecutorUnavailable, match=r"must be inside sites/www\.example\.com/"):
        variables(_site_context("sites/other.example.com/files"))
