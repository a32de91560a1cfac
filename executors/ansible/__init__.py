"""The Ansible back-end: each task type runs the role of the same name, from the roles
directory its binding names (``ROLES_DIR``, the built-in roles, unless it names one)."""

from executors.ansible.executor import ROLES_DIR, AnsibleExecutor
from executors.ansible.variables import SshAccess

__all__ = ["ROLES_DIR", "AnsibleExecutor", "SshAccess"]
