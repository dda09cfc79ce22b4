"""Who may call an endpoint: public → anyone (tokens ignored); authenticated → any valid Dais token; private
(and the legacy protected) → a member of the endpoint's namespace, an admin, or a token scoped to that very
endpoint.

A token scoped to one endpoint reaches only that endpoint among those that need a token. Checked tokens are
remembered for ``ttl`` seconds (under 5, so a revocation applies within 5 s) and unknown ones for a second;
lookups of one token in flight at the same time share one database query. While the database is unavailable a
remembered token still passes until its ``ttl`` is up; then, like one never seen, it is answered 503 with
``Retry-After`` (it cannot be checked: that is not a 401), and the answer is not remembered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core.db.outage import RETRY_AFTER_SECONDS, unavailable
from core.db.tokens import digest, token_with_user
from core.domain.enums import EndpointType
from gateway.routing import Route

NEGATIVE_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    is_admin: bool
    namespaces: frozenset[str]
    endpoint_scope: str | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Denial:
    status: int  # 401 or 403; 503 when the token cannot be checked
    message: str
    retry_after: int | None = None


MISSING = Denial(401, "missing token: send 'Authorization: Bearer <token>' (create one with `dais tokens create`)")
MALFORMED = Denial(401, "malformed Authorization header: expected 'Bearer <token>'")
UNKNOWN = Denial(401, "invalid token: check it, or create a new one with `dais tokens create`")
REVOKED = Denial(401, "this token was revoked: create a new one with `dais tokens create`")
EXPIRED = Denial(401, "this token has expired: create a new one with `dais tokens create`")
UNCHECKED = Denial(
    503,
    f"cannot check the token now: the database is unavailable; retry in {RETRY_AFTER_SECONDS} s",
    retry_after=RETRY_AFTER_SECONDS,
)


def decide(route: Route, caller: Caller | Denial | None, now: datetime) -> Denial | None:
    """None when the caller may reach ``route``; otherwise why not. ``caller`` None: no token was sent."""
    if route.access is EndpointType.PUBLIC:
        return None  # anyone, whatever token they send
    if caller is None:
        return MISSING
    if isinstance(caller, Denial):
        return caller
    if caller.expires_at is not None and caller.expires_at <= now:
        return EXPIRED
    if caller.endpoint_scope is not None:
        if caller.endpoint_scope == route.endpoint_id:
            return None
        return Denial(403, f"this token is scoped to another endpoint: use a token for {route.label}")
    if route.access in (EndpointType.PUBLIC, EndpointType.AUTHENTICATED):
        return None
    if caller.is_admin or route.namespace in caller.namespaces:
        return None
    return Denial(
        403,
        f"{route.label} is private: use a token of a member of namespace {route.namespace!r}, or a token "
        "scoped to this endpoint",
    )


class Miss(Enum):
    MISS = "miss"


class TokenCache:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        size: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self.size = size
        self._known: dict[str, tuple[Caller | Denial, float]] = {}
        self._inflight: dict[str, asyncio.Future[Caller | Denial]] = {}

    def cached(self, authorization: str | None) -> Caller | Denial | Miss | None:
        """What ``caller`` would answer, when that needs no database read; ``Miss.MISS`` otherwise."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return MALFORMED
        known = self._known.get(digest(token))
        if known is not None:
            found, at = known
            if self.monotonic() - at < (self.ttl_s if isinstance(found, Caller) else min(self.ttl_s, NEGATIVE_TTL_S)):
                return found
        return Miss.MISS

    async def caller(self, authorization: str | None) -> Caller | Denial | None:
        """The caller behind an ``Authorization`` header: None without one, a Denial for a bad one."""
        found = self.cached(authorization)
        if not isinstance(found, Miss):
            return found
        assert authorization is not None
        key = digest(authorization.partition(" ")[2].strip())
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Caller | Denial] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            try:
                found = await asyncio.to_thread(self._load, key)
            except Exception as exc:
                if not unavailable(exc) and not isinstance(exc, PoolTimeout):
                    raise
                found = UNCHECKED  # the engine's watch logs an outage once; a full pool is load, said by the 503
            future.set_result(found)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._inflight[key]
        if found is UNCHECKED:
            return found  # not remembered: the next request asks the database again
        if len(self._known) >= self.size:
            self._known.clear()  # crude but bounded; refills within one TTL
        self._known[key] = (found, self.monotonic())
        return found

    def _load(self, key: str) -> Caller | Denial:
        with self.sessions() as session:
            row = token_with_user(session, key)
        if row is None:
            return UNKNOWN
        if row.revoked_at is not None:
            return REVOKED
        orgs = row.org_names.split(",") if row.org_names else []
        return Caller(
            user=row.user_name,
            is_admin=row.is_admin,
            namespaces=frozenset([row.user_name, *orgs]),
            endpoint_scope=row.endpoint_id,
            expires_at=row.expires_at,
        )
