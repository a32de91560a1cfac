"""Where the remote CLI keeps its server URL and token: one JSON file, mode 0600."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class NotLoggedIn(Exception):
    """No server URL or token: ``aegir login URL`` first."""


@dataclass(frozen=True)
class Profile:
    url: str
    token: str


def config_path() -> Path:
    """``$AEGIR_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/aegir/client.json``."""
    if explicit := os.environ.get("AEGIR_CLIENT_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aegir" / "client.json"


def load() -> Profile:
    """The saved profile; ``AEGIR_URL`` and ``AEGIR_TOKEN`` override it (CI, scripts)."""
    saved: dict[str, str] = {}
    path = config_path()
    if path.exists():
        saved = json.loads(path.read_text())
    url = os.environ.get("AEGIR_URL") or saved.get("url")
    token = os.environ.get("AEGIR_TOKEN") or saved.get("token")
    if not url or not token:
        raise NotLoggedIn(
            "not logged in: run `aegir login URL` first (or set AEGIR_URL and AEGIR_TOKEN)"
        )
    return Profile(url.rstrip("/"), token)


def save(profile: Profile) -> Path:
    """Write the profile readable by its owner only (the token is a password)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"url": profile.url, "token": profile.token}, indent=2) + "\n"
    # Created 0600 before anything is written: the token is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(body)
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC
    return path


def forget() -> bool:
    path = config_path()
    if path.exists():
        path.unlink()
        return True
    return False


def _kinds_path() -> Path:
    return config_path().with_name("kinds.json")


def remember_kinds(names: list[str]) -> None:
    """The server's entity kinds, for ``aegir --help`` and shell completion offline."""
    try:
        _kinds_path().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _kinds_path().write_text(json.dumps(sorted(names)))
    except OSError:
        pass  # only a convenience


def remembered_kinds() -> list[str]:
    try:
        names = json.loads(_kinds_path().read_text())
    except (OSError, ValueError):
        return []
    return [str(name) for name in names] if isinstance(names, list) else []
