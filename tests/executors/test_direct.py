"""Which roles an action may run without ansible-playbook, and why not when it may not."""

from __future__ import annotations

from pathlib import Path

import pytest

from executors.ansible import ROLES_DIR
from executors.ansible.direct import Unsupported, check_reads, load_role


def _role(root: Path, tasks: str) -> Path:
    path = root / "a_role"
    (path / "tasks").mkdir(parents=True)
    (path / "tasks" / "main.yml").write_text(tasks)
    return path


def test_the_login_role_runs_without_a_playbook() -> None:
    role = load_role(ROLES_DIR / "site_login")
    assert [step.module for step in role.steps] == ["assert", "command", "aegir_output"]
    assert role.reads == {"platform", "site", "uli"} and role.defines == {"uli"}


def test_a_module_outside_the_subset_is_named(tmp_path: Path) -> None:
    path = _role(tmp_path, "- name: Look\n  ansible.builtin.stat:\n    path: /\n")
    with pytest.raises(Unsupported, match=r"task 'Look' uses ansible.builtin.stat"):
        load_role(path)


def test_a_task_keyword_outside_the_subset_is_named(tmp_path: Path) -> None:
    tasks = (
        "- name: Each\n  ansible.builtin.command:\n    argv: [echo, '{{ item }}']\n  loop: [1]\n"
    )
    with pytest.raises(Unsupported, match=r"task 'Each' uses loop"):
        load_role(_role(tmp_path, tasks))


def test_a_variable_only_a_playbook_sets_sends_the_role_to_the_playbook(tmp_path: Path) -> None:
    tasks = '- ansible.builtin.fail:\n    msg: "{{ ansible_facts.hostname }}"\n  when: x\n'
    role = load_role(_role(tmp_path, tasks))
    check_reads(role, {"x": True, "ansible_facts": {}})
    with pytest.raises(Unsupported, match="it reads ansible_facts, which only a playbook sets"):
        check_reads(role, {"x": True})
