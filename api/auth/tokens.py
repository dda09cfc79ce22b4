"""API tokens: random, shown once, stored as a SHA-256 digest (high-entropy secrets need no slow hash)."""

from __future__ import annotations

import secrets

from core.db.tokens import digest

__all__ = ["TOKEN_PREFIX", "digest", "display_prefix", "new_token"]

TOKEN_PREFIX = "dais_"  # noqa: S105 (a prefix, not a secret)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def display_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 4]
