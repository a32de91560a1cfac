"""Follow a run's log over the server's websocket, resuming after a dropped connection."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from app.client.api import ApiError
from app.client.config import Profile

RETRIES = 5


@dataclass
class Ending:
    status: str
    exit_code: int | None
    error: str | None = None

    @property
    def code(self) -> int:
        """The run's exit status as the CLI's own: 0 only for a run that succeeded."""
        if self.status == "succeeded":
            return 0
        return self.exit_code if self.exit_code else 1


@dataclass
class Follower:
    """Prints lines and task progress; ``last`` is the seq to resume after."""

    profile: Profile
    run_id: str
    tasks: dict[int, str] = field(default_factory=dict)
    last: int = 0
    out: TextIO = sys.stdout
    progress: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)
    # The run's tasks as stored (position, task_key, status): read at the end, so a run that
    # ended before the websocket connected still shows how each task ended.
    stored_tasks: Callable[[], list[dict[str, Any]]] | None = None
    shown: dict[int, str] = field(default_factory=dict)

    def follow(self) -> Ending:
        failures = 0
        while True:
            try:
                return self._once()
            except (ConnectionClosed, OSError, TimeoutError) as error:
                failures += 1
                if failures > RETRIES:
                    raise ApiError(
                        0,
                        f"lost the log stream ({error}); resume with "
                        f"`aegir runs follow {self.run_id} --after {self.last}`",
                    ) from None
                self.progress(f"aegir: connection lost ({error}); resuming after line {self.last}")
                time.sleep(min(2.0**failures / 4, 5.0))

    def _once(self) -> Ending:
        url = self.profile.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        headers = {"Authorization": f"Bearer {self.profile.token}"}
        try:
            socket = connect(
                f"{url}/ws/runs/{self.run_id}?after={self.last}",
                additional_headers=headers,
                open_timeout=10,
            )
        except InvalidStatus as error:
            raise ApiError(error.response.status_code, f"websocket refused: {error}") from None
        with socket:
            while True:
                try:
                    text = socket.recv()
                except ConnectionClosed as closed:
                    if closed.rcvd is not None and closed.rcvd.code >= 4000:
                        raise ApiError(closed.rcvd.code - 4000, closed.rcvd.reason) from None
                    raise
                ending = self._handle(json.loads(text))
                if ending is not None:
                    return ending

    def _handle(self, message: dict[str, Any]) -> Ending | None:
        kind = message.get("type")
        if kind == "log":
            for line in message["lines"]:
                if line["seq"] <= self.last:
                    continue  # resent after a reconnect
                prefix = "aegir: " if line["stream"] == "system" else ""
                print(prefix + line["line"], file=self.out, flush=True)
                self.last = line["seq"]
        elif kind == "task":
            self._task(int(message["position"]), str(message["status"]))
        elif kind == "status":
            self.progress(f"▸ run: {message['status']}")
        elif kind == "end":
            for task in self.stored_tasks() if self.stored_tasks else []:
                if task["status"] != "pending":
                    self._task(int(task["position"]), str(task["status"]))
            return Ending(message["status"], message.get("exit_code"), message.get("error"))
        return None

    def _task(self, position: int, status: str) -> None:
        if self.shown.get(position) == status:
            return
        self.shown[position] = status
        self.progress(f"▸ {self.tasks.get(position, f'#{position}')}: {status}")
