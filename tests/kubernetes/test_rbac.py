"""The ClusterRole the README gives grants everything the back-end needs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # PyYAML comes with ansible-core, without stubs

from executors.kubernetes import rbac

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readmes_cluster_role_grants_what_the_steps_need() -> None:
    blocks = re.findall(r"```yaml\n(.*?)\s*```", README.read_text(), re.DOTALL)
    [role] = [
        yaml.safe_load(textwrap.dedent(block)) for block in blocks if "kind: ClusterRole" in block
    ]
    assert rbac.missing(role["rules"]) == []


def test_a_rule_grants_only_its_groups_resources_and_verbs() -> None:
    rules = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
    assert "get apps/deployments" not in rbac.missing(rules)
    assert "patch apps/deployments" in rbac.missing(rules)
    assert "get apps/statefulsets" in rbac.missing(rules)
