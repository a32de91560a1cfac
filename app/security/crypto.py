"""Secret task values, encrypted at rest with a key derived from ``AEGIR_SECRET_KEY``."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

MARK = "enc:v1:"


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"aegir-secrets:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, value: str) -> str:
        return MARK + self._fernet.encrypt(value.encode()).decode()

    def open(self, stored: Any) -> Any:
        """The clear value; values stored before encryption existed pass through."""
        if not isinstance(stored, str) or not stored.startswith(MARK):
            return stored
        try:
            return self._fernet.decrypt(stored[len(MARK) :].encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a secret cannot be decrypted: was AEGIR_SECRET_KEY changed?"
            ) from None
