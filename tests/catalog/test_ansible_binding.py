"""Task types and the Ansible roles shipped for them; inventories; derived paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog.builtin.site.ansible import db_identifier
from app.catalog.registry import build_catalog
from app.catalog.types import AnsibleRole
from executors.ansible import ROLES_DIR, SshAccess
from executors.ansible.variables import hosts_of, inventory, variables
from executors.base import ExecutorUnavailable
from tests.catalog import samples


def test_every_ansible_task_has_its_role_where_its_binding_says() -> None:
    catalog = build_catalog()
    bound = {n: t.executor for n, t in catalog.tasks.items() if isinstance(t.executor, AnsibleRole)}
    assert {"site_install", "cache_purge"} <= bound.keys(), "built-ins and the example plugin"
    missing = [
        name
        for name, binding in bound.items()
        if not ((binding.roles or ROLES_DIR) / name / "tasks" / "main.yml").is_file()
    ]
    assert missing == []


def test_a_site_runs_on_its_platform_s_server_and_its_database_on_the_db_server() -> None:
    catalog = build_catalog(plugins=False)
    site = samples.site()
    site["references"]["platform"]["references"]["server"] = samples.server("ssh")
    context = samples.context(catalog, site, "install")
    access = SshAccess(Path("/keys/id_ed25519"), Path("/keys/known_hosts"))
    found = inventory(hosts_of(context), access)["all"]["children"]
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
    context = samples.context(build_catalog(plugins=False), samples.server("local"), "verify")
    hosts = inventory(hosts_of(context), SshAccess())["all"]["children"]["target"]["hosts"]
    assert hosts["web1.example.com"]["ansible_connection"] == "local"
    assert "ansible_host" not in hosts["web1.example.com"]


def test_database_names_come_from_the_domain() -> None:
    assert db_identifier("www.example.com") == "www_example_com"
    assert db_identifier("1st.example.com") == "s1st_example_com"
    assert len(db_identifier("a" * 60 + ".example.com")) == 32


def _site_variables(files_path: str | None) -> dict[str, object]:
    catalog = build_catalog(plugins=False)
    context = samples.context(catalog, samples.site(), "files", files={"files_path": files_path})
    return variables(context, AnsibleRole())


def test_every_path_a_site_writes_is_inside_its_own_directory() -> None:
    found = _site_variables(None)["site"]
    assert isinstance(found, dict)
    assert found["dir"] == "/srv/p/sites/www.example.com"
    assert found["files_dir"] == "/srv/p/sites/www.example.com/files"
    assert found["settings_file"] == "/srv/p/sites/www.example.com/settings.php"
    assert found["vhost_file"] == "/etc/nginx/sites-enabled/www.example.com.conf"
    inside = _site_variables("sites/www.example.com/uploads")["site"]
    assert isinstance(inside, dict)
    assert inside["files_dir"] == "/srv/p/sites/www.example.com/uploads"
    with pytest.raises(ExecutorUnavailable, match=r"must be inside sites/www\.example\.com/"):
        _site_variables("sites/other.example.com/files")
