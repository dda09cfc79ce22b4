"""Start-up tasks of the API process: the secret key, and the admin user with its token."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.identity.service import issue_token
from core.db import tokens
from core.db.crypto import load_or_create_key
from core.db.models import Account, ApiToken
from core.db.session import transaction
from core.domain.enums import AccountKind
from core.settings import Settings

ADMIN = "admin"
BOOTSTRAP_TOKEN_NAME = "bootstrap"  # noqa: S105 (a name, not a secret)


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def secret_key(settings: Settings) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    if settings.is_sqlite:
        return load_or_create_key(settings.home)
    raise ConfigurationError(
        "DAIS_SECRET_KEY is required with Postgres (it encrypts secrets at rest and must be the same on "
        "every replica): generate one with `dais secret-key` and keep it safe"
    )


def ensure_admin(factory: sessionmaker[Session], settings: Settings, now: datetime) -> str | None:
    """Makes sure user ``admin`` exists and can log in. Returns a new plain token when one was created
    (to be printed once), else None. With DAIS_ADMIN_TOKEN set, that exact token is the bootstrap token."""
    wanted = settings.admin_token.get_secret_value() if settings.admin_token else None
    try:
        with transaction(factory) as session:
            return _ensure_admin(session, wanted, now)
    except IntegrityError:  # another replica bootstrapped at the same moment: its work stands
        return None


def _ensure_admin(session: Session, wanted: str | None, now: datetime) -> str | None:
    admin = session.scalars(select(Account).where(Account.name == ADMIN)).first()
    if admin is None:
        admin = Account(id=uuid.uuid4().hex, name=ADMIN, kind=AccountKind.USER, is_admin=True, created_at=now)
        session.add(admin)
        session.flush()
    current = session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == admin.id, ApiToken.name == BOOTSTRAP_TOKEN_NAME, ApiToken.revoked_at.is_(None)
        )
    ).all()
    if wanted is not None:
        digest = tokens.digest(wanted)
        for token in current:
            if token.token_hash != digest:
                token.revoked_at = now  # the configured token replaces any earlier bootstrap token
        if any(t.token_hash == digest for t in current):
            return None
        issue_token(
            session,
            user=admin,
            name=BOOTSTRAP_TOKEN_NAME,
            expires_at=None,
            endpoint_id=None,
            now=now,
            secret=wanted,
        )
        return None
    if current:
        return None
    _, plain = issue_token(session, user=admin, name=BOOTSTRAP_TOKEN_NAME, expires_at=None, endpoint_id=None, now=now)
    return plain
