from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from api.auth.principal import Principal
from api.errors import Unauthorized
from core.db import tokens
from core.db.tokens import token_with_user


class Authenticator:
    """Resolves bearer tokens to principals and remembers a valid token's principal for ``ttl_s`` seconds,
    which saves a database round trip on most requests.

    Expiry is checked on every request. A revocation through this process takes effect at once
    (``forget``); other API processes see it within ``ttl_s``, as do membership changes.
    """

    def __init__(self, *, ttl_s: float, monotonic: Callable[[], float] = time.monotonic, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self.size = size
        self._cache: dict[str, tuple[Principal, datetime | None, float]] = {}

    def authenticate(self, session: Session, *, authorization: str | None, now: datetime) -> Principal:
        digest = _digest_of(authorization)
        cached = self._cache.get(digest)
        if cached is not None and self.monotonic() - cached[2] < self.ttl_s:
            principal, expires_at, _ = cached
            _check_expiry(expires_at, now)
            return principal
        principal, expires_at = _load(session, digest, now)
        if self.ttl_s > 0:
            if len(self._cache) >= self.size:
                self._cache.clear()  # crude but bounded; refills within one TTL
            self._cache[digest] = (principal, expires_at, self.monotonic())
        return principal

    def forget(self, token_id: str) -> None:
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.token_id == token_id:
                self._cache.pop(digest, None)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 when it is missing or another scheme.
    Checked before a request's body is validated, so a caller without a token learns that first."""
    if not authorization:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>' (create one with `dais tokens create`)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def _digest_of(authorization: str | None) -> str:
    return tokens.digest(bearer_token(authorization))


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise Unauthorized("this token has expired: create a new one with `dais tokens create`")


def _load(session: Session, digest: str, now: datetime) -> tuple[Principal, datetime | None]:
    found = token_with_user(session, digest)
    if found is None:
        raise Unauthorized("invalid token: check it, or create a new one with `dais tokens create`")
    if found.revoked_at is not None:
        raise Unauthorized("this token was revoked: create a new one with `dais tokens create`")
    _check_expiry(found.expires_at, now)
    orgs = found.org_names.split(",") if found.org_names else []
    principal = Principal(
        account_id=found.user_id,
        name=found.user_name,
        is_admin=found.is_admin,
        namespaces=frozenset([found.user_name, *orgs]),
        token_id=found.token_id,
        token_name=found.token_name,
        endpoint_scope=found.endpoint_id,
    )
    return principal, found.expires_at
