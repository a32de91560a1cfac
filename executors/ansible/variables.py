"""The inventory and the extra variables of one task, from the entity graph.

The host comes from the server the entity sits on (a site's platform's server; a
platform's server; a server itself): ``local`` runs on the control machine, ``ssh``
connects with the stored key. A site's database tasks run on its database server (the
``db`` group). Every path a role writes to is derived here, from fields that were
validated as paths, domains and identifiers: roles never build a path of their own.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executors.base import ExecutorUnavailable, TaskContext

DB_IDENTIFIER_LENGTH = 32


@dataclass(frozen=True)
class SshAccess:
    """How Ansible reaches 'ssh' servers: Aegir's private key and its known hosts."""

    key: Path | None = None
    known_hosts: Path | None = None


def server_of(entity: dict[str, Any]) -> dict[str, Any] | None:
    if entity["kind"] == "server":
        return entity
    refs = entity.get("references", {})
    if "server" in refs:
        server: dict[str, Any] = refs["server"]
        return server
    if "platform" in refs:
        return server_of(refs["platform"])
    return None


def _host(server: dict[str, Any], ssh: SshAccess) -> dict[str, Any]:
    fields = server["fields"]
    if fields.get("connection") == "local":
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    host: dict[str, Any] = {
        "ansible_connection": "ssh",
        "ansible_host": fields.get("hostname", server["name"]),
        "ansible_user": fields.get("ssh_user", "aegir"),
        "ansible_port": fields.get("ssh_port", 22),
        "ansible_python_interpreter": fields.get("python") or "auto_silent",
    }
    if ssh.key is not None:
        host["ansible_ssh_private_key_file"] = str(ssh.key)
    if ssh.known_hosts is not None:
        host["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={ssh.known_hosts}"
    return host


def inventory(entity: dict[str, Any], ssh: SshAccess) -> dict[str, Any]:
    """Groups ``target`` (where the role runs) and ``db`` (the site's database server)."""
    target: dict[str, Any] = {}
    db: dict[str, Any] = {}
    server = server_of(entity)
    if server is not None:
        target[server["name"]] = _host(server, ssh)
    db_server = entity.get("references", {}).get("db_server")
    if db_server is not None:
        db[db_server["name"]] = _host(db_server, ssh)
    if not target:
        target["localhost"] = _host({"name": "localhost", "fields": {"connection": "local"}}, ssh)
    return {"all": {"children": {"target": {"hosts": target}, "db": {"hosts": db}}}}


def db_identifier(domain: str) -> str:
    """A database or user name from a domain: www.example.com -> www_example_com."""
    name = re.sub(r"[^a-z0-9]", "_", domain.lower())[:DB_IDENTIFIER_LENGTH]
    return name if re.match(r"[a-z_]", name) else f"s{name}"[:DB_IDENTIFIER_LENGTH]


def server_vars(server: dict[str, Any]) -> dict[str, Any]:
    fields = server["fields"]
    return {
        "name": server["name"],
        "http_port": fields.get("http_port", 80),
        "http_address": fields.get("http_address"),
        "nginx_conf": fields.get("nginx_conf", "/etc/nginx/nginx.conf"),
        "nginx_sites_dir": fields.get("nginx_sites_dir", "/etc/nginx/sites-enabled"),
        "backup_dir": fields.get("backup_dir", "/var/aegir/backups"),
        "postgresql_host": fields.get("postgresql_host", "/var/run/postgresql"),
        "postgresql_port": fields.get("postgresql_port", 5432),
        "postgresql_admin": fields.get("postgresql_admin", "postgres"),
        "mariadb_socket": fields.get("mariadb_socket", "/run/mysqld/mysqld.sock"),
        "mariadb_admin": fields.get("mariadb_admin", "root"),
    }


def platform_vars(platform: dict[str, Any]) -> dict[str, Any]:
    fields = platform["fields"]
    root = fields["root"]
    return {
        "name": platform["name"],
        "root": root,
        "flavor": fields.get("flavor", "drupal"),
        "drush": f"{root}/{fields.get('drush', 'vendor/bin/drush')}",
    }


def site_layout(
    domain: str,
    platform: dict[str, Any],
    server: dict[str, Any],
    tasks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Where a site named ``domain`` lives on ``platform``: every path it may write."""
    root = platform["root"]
    values = tasks.get("files", {}).get("values", {})
    files_path = values.get("files_path") or f"sites/{domain}/files"
    if not files_path.startswith(f"sites/{domain}/"):
        # Removing a site removes its directory: another site's files must never be in it.
        raise ExecutorUnavailable(
            f"files_path {files_path!r} must be inside sites/{domain}/, the site's own directory"
        )
    settings = "settings.php" if platform["flavor"] == "drupal" else "settings.json"
    return {
        "domain": domain,
        "platform": platform["name"],
        "root": root,
        "flavor": platform["flavor"],
        "port": tasks.get("vhost", {}).get("values", {}).get("port") or server["http_port"],
        "address": server["http_address"],
        "aliases": [],
        "dir": f"{root}/sites/{domain}",
        "files_path": files_path,
        "files_dir": f"{root}/{files_path}",
        "settings_file": f"{root}/sites/{domain}/{settings}",
        "maintenance_dir": f"{root}/sites/{domain}/maintenance",
        "vhost_file": f"{server['nginx_sites_dir']}/{domain}.conf",
        "backup_dir": f"{server['backup_dir']}/{domain}",
    }


def database_vars(
    domain: str, tasks: dict[str, dict[str, Any]], db_server: dict[str, Any]
) -> dict[str, Any]:
    values = tasks.get("database", {}).get("values", {})
    engine = values.get("engine") or "mariadb"
    return {
        "engine": engine,
        "name": values.get("db_name") or db_identifier(domain),
        "user": values.get("db_user") or db_identifier(domain),
        "password": values.get("db_password"),
        "host": db_server["postgresql_host"] if engine == "postgresql" else "localhost",
        "port": db_server["postgresql_port"] if engine == "postgresql" else None,
        "socket": db_server["mariadb_socket"] if engine == "mariadb" else None,
        "admin": db_server["postgresql_admin" if engine == "postgresql" else "mariadb_admin"],
    }


def variables(context: TaskContext) -> dict[str, Any]:
    """The role's extra variables: ``aegir`` (the run and this task) plus, by kind,
    ``server``, ``platform``, ``site``, ``db`` with every derived path and name."""
    entity = context.entity
    data: dict[str, Any] = {
        "aegir": {
            "run_id": context.run_id,
            "attempt": context.attempt,
            "task": context.key,
            "task_type": context.task_type,
            "completed": list(context.completed),
            "tasks": context.tasks,
            "entity": entity,
        },
        # This task's values; top-level, since ``aegir.values`` is a dict's method in Jinja.
        "values": context.values,
    }
    server = server_of(entity)
    if server is not None:
        data["server"] = server_vars(server)
    refs = entity.get("references", {})
    if entity["kind"] == "platform":
        data["platform"] = platform_vars(entity)
    if entity["kind"] == "site" and "platform" in refs and server is not None:
        platform = platform_vars(refs["platform"])
        data["platform"] = platform
        data["site"] = {
            **site_layout(entity["name"], platform, data["server"], context.tasks),
            "url": entity["url"],
            "aliases": entity["fields"].get("aliases", []),
            "https": entity["fields"].get("https", False),
        }
        db_server = server_vars(refs["db_server"]) if "db_server" in refs else data["server"]
        data["db_server"] = db_server
        data["db"] = database_vars(entity["name"], context.tasks, db_server)
        data.update(_moves(context, platform, data["server"], db_server, data["db"]))
    return data


def _moves(
    context: TaskContext,
    platform: dict[str, Any],
    server: dict[str, Any],
    db_server: dict[str, Any],
    db: dict[str, Any],
) -> dict[str, Any]:
    """Where a clone or a migrated site goes, derived like the site's own paths."""
    if context.task_type == "site_clone":
        domain = context.values["new_domain"]
        database = {
            "values": {"engine": db["engine"], "db_password": context.values.get("db_password")}
        }
        return {
            "clone": {
                **site_layout(domain, platform, server, {}),
                "url": f"http://{domain}",
                "port": context.tasks.get("vhost", {}).get("values", {}).get("port")
                or server["http_port"],
                "db": database_vars(domain, {"database": database}, db_server),
            }
        }
    if context.task_type == "site_restore":
        backup = context.tasks.get("backup_archive", {})
        path = backup.get("values", {}).get("path") or backup.get("outputs", {}).get("path")
        return {"restore": {"archive": f"{server['backup_dir']}/{path}" if path else None}}
    if context.task_type == "site_migrate":
        target = context.tasks.get(context.key, {}).get("refs", {}).get("target_platform")
        if target is None:
            return {}
        new_platform = platform_vars(target)
        target_server = server_of(target)
        return {
            "target": {
                "platform": new_platform,
                "same_server": target_server is not None
                and target_server["name"] == server["name"],
                "site": site_layout(context.entity["name"], new_platform, server, context.tasks),
            }
        }
    return {}
