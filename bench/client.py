"""Every HTTP and websocket call the bench makes goes through this module.

What a request carries to authenticate is decided in one place, :meth:`Api.headers`:
today a bearer token (the API token the stack creates for its admin user).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from websockets.asyncio.client import connect

# Messages of up to PAGE (1000) stored lines come in one frame; leave plenty of room.
WS_MAX_SIZE = 1 << 24


@dataclass(frozen=True)
class Api:
    """One Aegir API: where it is, and who the bench is to it."""

    base_url: str  # http://127.0.0.1:PORT
    ws_url: str  # ws://127.0.0.1:PORT
    token: str = ""

    def headers(self) -> dict[str, str]:
        """What every request and websocket handshake carries."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def http(self, timeout: float = 30.0) -> httpx.AsyncClient:
        # trust_env=False: no proxy from the environment; the bench talks to 127.0.0.1 only.
        return httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers(), timeout=timeout, trust_env=False
        )

    def http_sync(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers=self.headers(), timeout=timeout, trust_env=False
        )

    def websocket(self, path: str, open_timeout: float = 10.0) -> connect:
        """An ``async with`` websocket connection to ``path`` (``/ws/...``)."""
        return connect(
            f"{self.ws_url}{path}",
            additional_headers=self.headers(),
            proxy=None,
            max_size=WS_MAX_SIZE,
            open_timeout=open_timeout,
        )
