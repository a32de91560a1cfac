"""Action tasks without ansible-playbook: the role's own tasks, run by the worker itself.

An action answers within the click that asked, and ``ansible-playbook`` spends most of a
second starting before its first task (then AnsiballZ per module on the target). When
every task of the role is in a small subset (``assert``, ``fail``, ``set_fact``,
``command`` with ``argv``/``cmd`` and ``chdir``, ``aegir_output``; keywords ``name``,
``register``, ``when``, ``changed_when``, ``failed_when``), this executor runs them
here: the role file stays the one place its command is written, templated by Ansible's
own ``Templar`` over exactly the variables the playbook would get
(``variables.variables`` and the inventory's host variables), after the same
``meta/argument_specs.yml`` check. Commands run under a shepherd, locally or through a
kept SSH connection (``executors.ansible.commands``).

A role outside the subset (or one that reads a variable only a playbook defines, such as
facts) runs through ``AnsibleExecutor`` as before, and the worker logs one line saying why.

Only action tasks use this path (``executors.executor_for(..., action=True)``): a run's
log is Ansible's own output (TASK and RECAP lines, changed counts that the idempotence
tests and users read), and a run's tasks share one Ansible start per operation instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.catalog.types import AnsibleRole
from executors.ansible.commands import Deadline, Finished, Target, run_command
from executors.ansible.executor import ROLES_DIR
from executors.ansible.variables import SshAccess, hosts_of, inventory, variables
from executors.base import Emitter, Executor, TaskContext

logger = logging.getLogger(__name__)

# ansible-playbook's exit code when a task failed on a host.
EXIT_FAILED = 2
_PREFIXES = ("ansible.builtin.", "ansible.legacy.")
MODULES = {"assert", "fail", "set_fact", "command", "aegir_output"}
KEYWORDS = {"name", "register", "when", "changed_when", "failed_when"}
ARGUMENTS = {
    "assert": {"that", "fail_msg", "msg", "success_msg", "quiet"},
    "fail": {"msg"},
    "command": {"argv", "cmd", "chdir"},
}
# Names a template may read besides the variables: what this executor defines too.
MAGIC = {"inventory_hostname", "inventory_hostname_short", "group_names", "role_name",
         "role_path", "ansible_check_mode", "ansible_diff_mode", "omit", "range", "dict",
         "namespace", "true", "false", "none", "True", "False", "None",
         # changed_when/failed_when read the command's result by its keys too
         "rc", "stdout", "stderr", "stdout_lines", "stderr_lines"}  # fmt: skip


class Unsupported(Exception):
    """The role needs ansible-playbook; the message says why."""


@dataclass(frozen=True)
class Step:
    name: str
    module: str
    args: Any
    register: str | None
    when: Any
    changed_when: Any
    failed_when: Any


@dataclass(frozen=True)
class Role:
    """A role's tasks as loaded from its files (strings trusted as templates, as
    ansible-playbook trusts a role's own files), defaults, vars and argument spec."""

    name: str
    path: Path
    steps: tuple[Step, ...]
    defaults: Mapping[str, Any]
    vars: Mapping[str, Any]
    spec: Mapping[str, Any] | None
    reads: frozenset[str]  # every variable name a template of it reads
    defines: frozenset[str]  # what its tasks define: register and set_fact names


class DirectExecutor:
    """Runs an action's role in the worker when it can, through ``fallback`` otherwise."""

    def __init__(self, role: str, binding: AnsibleRole, ssh: SshAccess, fallback: Executor):
        self.role = role
        self.binding = binding
        self.ssh = ssh
        self.fallback = fallback
        self.path = (binding.roles or ROLES_DIR) / role

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        try:
            role = load_role(self.path)
            extra = _plain(variables(context, self.binding))
            host, target = _target(inventory(hosts_of(context), self.ssh))
            facts = {**role.defaults, **host, **_magic(role, target), **role.vars, **extra}
            check_reads(role, facts)
        except Unsupported as why:
            logger.info("action %s: role %s runs through ansible-playbook: %s",
                        context.key, self.role, why)  # fmt: skip
            return await self.fallback.run(context, emit, cancel)
        play = Play(role, facts, target, self.ssh, context, emit, Deadline.of(context, cancel))
        return await play.run()


def preload() -> None:
    """Import what this path uses from Ansible (half a second on a busy machine), so that
    the first action after a worker starts does not wait for it."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: F401
    from ansible.parsing.dataloader import DataLoader  # noqa: F401
    from ansible.template import Templar  # noqa: F401


# ------------------------------------------------------------------------ loading

_ROLES: dict[Path, tuple[tuple[float, ...], Role | Unsupported]] = {}


def load_role(path: Path) -> Role:
    """The role at ``path``, from a cache kept while its files are unchanged."""
    files = [path / "tasks" / "main.yml", path / "defaults" / "main.yml",
             path / "vars" / "main.yml", path / "meta" / "main.yml",
             path / "meta" / "argument_specs.yml"]  # fmt: skip
    stamp = tuple(_mtime(each) for each in files)
    cached = _ROLES.get(path)
    if cached is None or cached[0] != stamp:
        try:
            found: Role | Unsupported = _load(path)
        except Unsupported as why:
            found = why
        cached = _ROLES[path] = (stamp, found)
    if isinstance(cached[1], Unsupported):
        raise cached[1]
    return cached[1]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def _load(path: Path) -> Role:
    if not (path / "tasks" / "main.yml").is_file():
        raise Unsupported(f"there is no {path}/tasks/main.yml")
    for other in ("files", "templates", "library", "module_utils", "filter_plugins"):
        if (path / other).exists():
            raise Unsupported(f"it ships {other}/")
    meta = _yaml(path / "meta" / "main.yml") or {}
    if meta.get("dependencies"):
        raise Unsupported("it has role dependencies")
    tasks = _yaml(path / "tasks" / "main.yml") or []
    steps = tuple(_step(task) for task in tasks)
    specs = (_yaml(path / "meta" / "argument_specs.yml") or {}).get("argument_specs") or {}
    defaults = dict(_yaml(path / "defaults" / "main.yml") or {})
    role_vars = dict(_yaml(path / "vars" / "main.yml") or {})
    templates = [step.args for step in steps] + [defaults, role_vars]
    conditions = [c for s in steps for c in (s.when, s.changed_when, s.failed_when)]
    conditions += [s.args.get("that") for s in steps if s.module == "assert"]
    return Role(
        name=path.name,
        path=path,
        steps=steps,
        defaults=defaults,
        vars=role_vars,
        spec=(specs.get("main") or {}).get("options"),
        reads=frozenset(_names(templates, conditions)),
        defines=frozenset(_defined(steps)),
    )


def _yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    from ansible.parsing.dataloader import DataLoader

    # Trusted as templates: a role's own files are, for ansible-playbook too.
    return DataLoader().load_from_file(str(path), cache="none", trusted_as_template=True)


def _step(task: Any) -> Step:
    if not isinstance(task, dict):
        raise Unsupported("a task is not a mapping")
    modules = [key for key in task if _module(key) in MODULES]
    others = set(task) - KEYWORDS - set(modules)
    if len(modules) != 1 or others:
        what = ", ".join(sorted(others)) or "no module it knows"
        raise Unsupported(f"task {task.get('name', '?')!r} uses {what}")
    module = _module(modules[0])
    args = task[modules[0]]
    if not isinstance(args, dict):
        raise Unsupported(f"task {task.get('name', '?')!r} gives {module} free-form arguments")
    allowed = ARGUMENTS.get(module)
    if allowed is not None and set(args) - allowed:
        extra = ", ".join(sorted(set(args) - allowed))
        raise Unsupported(f"task {task.get('name', '?')!r} gives {module} {extra}")
    if module == "command" and ("argv" in args) == ("cmd" in args):
        raise Unsupported(f"task {task.get('name', '?')!r}: command wants argv or cmd")
    return Step(
        name=str(task.get("name") or module),
        module=module,
        args=args,
        register=task.get("register"),
        when=task.get("when"),
        changed_when=task.get("changed_when"),
        failed_when=task.get("failed_when"),
    )


def _module(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _names(templates: Iterable[Any], conditions: Iterable[Any]) -> set[str]:
    """The root variable names the role's templates and conditionals read."""
    from jinja2 import Environment, TemplateSyntaxError, nodes

    sources = [text for item in templates for text in _strings(item) if "{" in text]
    sources += [f"{{{{ {text} }}}}" for item in conditions for text in _strings(item)]
    environment = Environment(autoescape=True)  # only parsed, never rendered
    found: set[str] = set()
    for source in sources:
        try:
            tree = environment.parse(source)
        except TemplateSyntaxError as error:
            raise Unsupported(f"cannot read the template {source!r}: {error}") from None
        stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
        found |= {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - stored
    return found


def _strings(item: Any) -> Iterable[str]:
    if isinstance(item, str):
        yield item
    elif isinstance(item, dict):
        for value in item.values():
            yield from _strings(value)
    elif isinstance(item, list):
        for value in item:
            yield from _strings(value)


def _defined(steps: Iterable[Step]) -> set[str]:
    names = {step.register for step in steps if step.register}
    names |= {key for step in steps if step.module == "set_fact" for key in step.args}
    return names


# ------------------------------------------------------------------------ variables


def _plain(data: Any) -> Any:
    """What the playbook reads: the extra variables as their JSON file holds them."""
    return json.loads(json.dumps(data, default=_reveal))


def _reveal(value: object) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _target(hosts: dict[str, Any]) -> tuple[dict[str, Any], Target]:
    """The one host of group ``target``: its inventory variables, and how to reach it."""
    group = hosts["all"]["children"]["target"]["hosts"]
    (name, host), *_ = group.items()
    if host["ansible_connection"] == "local":
        return host, Target(name)
    target = Target(name, host["ansible_host"], int(host["ansible_port"]), host["ansible_user"])
    return host, target


def _magic(role: Role, target: Target) -> dict[str, Any]:
    return {
        "inventory_hostname": target.name,
        "inventory_hostname_short": target.name.split(".")[0],
        "group_names": ["target"],
        "role_name": role.name,
        "role_path": str(role.path),
        "ansible_check_mode": False,
        "ansible_diff_mode": False,
    }


def check_reads(role: Role, facts: Mapping[str, Any]) -> None:
    """``Unsupported`` when a template of the role reads a name that neither ``facts``,
    the role's own tasks, nor this executor define (facts, hostvars, lookups...)."""
    missing = role.reads - set(facts) - role.defines - MAGIC
    if missing:
        raise Unsupported(f"it reads {', '.join(sorted(missing))}, which only a playbook sets")


# ------------------------------------------------------------------------ running


class Failed(Exception):
    """A task failed: its message, as Ansible's ``msg`` would say it."""


@dataclass
class Play:
    """One run of a role's tasks on its target, in order, until one fails.

    Its lines are what the commands print, and a failure's message last on stderr:
    what an action answers with (no TASK or RECAP lines, which would bury them)."""

    role: Role
    facts: dict[str, Any]
    target: Target
    ssh: SshAccess
    context: TaskContext
    emit: Emitter
    deadline: Deadline

    async def run(self) -> int:
        from ansible.errors import AnsibleError
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar

        self.templar = Templar(loader=DataLoader(), variables=self.facts)
        try:
            self._validate()
            for step in self.role.steps:
                code = await self._step(step)
                if code is not None:
                    return code
        except (Failed, AnsibleError) as error:
            message = getattr(error, "message", None) or str(error)
            await self.emit.log("stderr", str(message))
            return EXIT_FAILED
        return 0

    def _validate(self) -> None:
        """What the playbook's first task does: ``meta/argument_specs.yml``, checked."""
        if not self.role.spec:
            return
        from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

        given = {name: self.facts[name] for name in self.role.spec if name in self.facts}
        result = ArgumentSpecValidator(dict(self.role.spec)).validate(given)
        if result.error_messages:
            raise Failed("Validation of arguments failed:\n" + "\n".join(result.error_messages))

    def _true(self, condition: Any) -> bool:
        conditions = condition if isinstance(condition, list) else [condition]
        return all(self.templar.evaluate_conditional(each) for each in conditions)

    async def _step(self, step: Step) -> int | None:
        """Run ``step``; an exit code when the play must end here (a stopped command)."""
        self.templar.available_variables = self.facts
        if step.when is not None and not self._true(step.when):
            self._register(step, {"changed": False, "skipped": True})
            return None
        if step.module == "command":
            return await self._command(step)
        result = self._module(step)
        self._register(step, result)
        for name, value in result.get("aegir_output", {}).items():
            await self.emit.output(str(name), value)
        return None

    def _module(self, step: Step) -> dict[str, Any]:
        args = self.templar.template(step.args)
        if step.module == "assert":
            for condition in _listed(step.args["that"]):
                if not self._true(condition):
                    raise Failed(args.get("fail_msg") or args.get("msg") or "Assertion failed")
            return {"changed": False, "msg": args.get("success_msg", "All assertions passed")}
        if step.module == "fail":
            raise Failed(args.get("msg") or "Failed as requested from task")
        if step.module == "set_fact":
            self.facts.update(_plain(args))
            return {"changed": False, "ansible_facts": _plain(args)}
        outputs = _plain(args)  # aegir_output
        return {"changed": False, "aegir_output": outputs, "msg": f"outputs: {', '.join(outputs)}"}

    async def _command(self, step: Step) -> int | None:
        args = self.templar.template(step.args)
        argv = [str(word) for word in args["argv"]] if "argv" in args else _split(args["cmd"])
        chdir = str(args["chdir"]) if args.get("chdir") is not None else None
        started = time.time()
        done = await run_command(
            argv, chdir, self.target, self.ssh, self.context, self.emit, self.deadline
        )
        if not isinstance(done, Finished):
            await self.emit.log("stderr", done.message)
            return done.code
        result = _command_result(argv, done, started)
        self._register(step, result)
        self.templar.available_variables = {**self.facts, **_as_result(result)}
        if step.changed_when is not None:
            result["changed"] = self._true(step.changed_when)
        if step.failed_when is not None:
            result["failed"] = self._true(step.failed_when)
        self._register(step, result)
        if result["failed"]:
            raise Failed(f"{step.name}: {result['msg'] or 'failed'} (rc {done.rc})")
        return None

    def _register(self, step: Step, result: dict[str, Any]) -> None:
        if step.register:
            self.facts[step.register] = result


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _split(cmd: Any) -> list[str]:
    """``cmd:`` as the command module splits it (no shell)."""
    return shlex.split(str(cmd))


def _as_result(result: dict[str, Any]) -> dict[str, Any]:
    """What ``changed_when``/``failed_when`` read besides the variables: the result's keys."""
    return {key: result[key] for key in ("rc", "stdout", "stderr", "stdout_lines", "stderr_lines")}


def _command_result(argv: list[str], done: Finished, started: float) -> dict[str, Any]:
    """The command module's result, as ``register`` stores it."""
    stdout, stderr = done.stdout.rstrip("\r\n"), done.stderr.rstrip("\r\n")
    return {
        "cmd": argv,
        "rc": done.rc,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": stderr.splitlines(),
        "changed": True,
        "failed": done.rc != 0,
        "msg": "non-zero return code" if done.rc != 0 else "",
        "delta": f"{time.time() - started:.6f}",
    }
