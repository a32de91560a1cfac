"""``aegir_output: {name: value}``: write outputs back to the task, through the relay.

Runs on the control machine; the executor reads ``aegir_output`` from the result and
the worker refuses any name the task type does not declare.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        outputs = dict(self._task.args)
        result.update(changed=False, aegir_output=outputs, msg=f"outputs: {', '.join(outputs)}")
        return result
