"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with the key from DAIS_SECRET_KEY."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except ValueError as exc:
            raise ValueError(
                "DAIS_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes): "
                "generate one with `dais secret-key`"
            ) from exc

    def seal(self, value: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode())

    def open(self, blob: bytes) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._fernet.decrypt(blob))
        except InvalidToken as exc:
            raise RuntimeError("stored secrets cannot be decrypted: DAIS_SECRET_KEY changed?") from exc
        return data


def new_key() -> str:
    return Fernet.generate_key().decode()


def load_or_create_key(home: Path) -> str:
    """The local default keeps its key next to its SQLite file, readable by the owner only."""
    path = home / "secret.key"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
