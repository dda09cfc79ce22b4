"""API tokens: random, shown once, stored as a SHA-256 digest (high-entropy secrets need no slow hash)."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "dais_"  # noqa: S105 (a prefix, not a secret)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 4]
