"""The token cache: saves a query per request, honours expiry always, and revocation within its TTL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.auth.service import Authenticator
from api.errors import Unauthorized
from core.db.models import ApiToken
from tests.conftest import Clock
from tests.factories import Ticks, make_user


def revoke_behind_its_back(db: sessionmaker[Session], clock: Clock) -> None:
    with db() as session, session.begin():
        session.execute(update(ApiToken).values(revoked_at=clock()))


def test_cached_principal_outlives_a_foreign_revocation_only_for_the_ttl(
    db: sessionmaker[Session], clock: Clock
) -> None:
    with db() as session, session.begin():
        token = make_user(session, "erin", now=clock())
    ticks = Ticks()
    auth = Authenticator(ttl_s=2, monotonic=ticks)
    with db() as session:
        assert auth.authenticate(session, authorization=f"Bearer {token}", now=clock()).name == "erin"
    revoke_behind_its_back(db, clock)  # as another API process would
    with db() as session:
        assert auth.authenticate(session, authorization=f"Bearer {token}", now=clock()).name == "erin"
        ticks.now += 2
        with pytest.raises(Unauthorized, match="revoked"):
            auth.authenticate(session, authorization=f"Bearer {token}", now=clock())


def test_forget_takes_effect_at_once(db: sessionmaker[Session], clock: Clock) -> None:
    with db() as session, session.begin():
        token = make_user(session, "erin", now=clock())
    auth = Authenticator(ttl_s=60, monotonic=Ticks())
    with db() as session:
        principal = auth.authenticate(session, authorization=f"Bearer {token}", now=clock())
    revoke_behind_its_back(db, clock)
    auth.forget(principal.token_id)
    with db() as session, pytest.raises(Unauthorized, match="revoked"):
        auth.authenticate(session, authorization=f"Bearer {token}", now=clock())


def test_expiry_is_checked_on_every_request(db: sessionmaker[Session], clock: Clock) -> None:
    with db() as session, session.begin():
        token = make_user(session, "erin", now=clock())
        session.execute(update(ApiToken).values(expires_at=clock() + timedelta(minutes=1)))
    auth = Authenticator(ttl_s=3600, monotonic=Ticks())
    with db() as session:
        auth.authenticate(session, authorization=f"Bearer {token}", now=clock())
        with pytest.raises(Unauthorized, match="expired"):
            auth.authenticate(session, authorization=f"Bearer {token}", now=clock() + timedelta(minutes=1))
