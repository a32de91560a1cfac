"""Personal API tokens: 256 random bits, shown once; only their SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "aegir_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(PREFIX) + 6]
