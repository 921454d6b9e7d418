"""API keys. Only a sha256 of each key is stored; the key itself is shown once, at creation.

Keys are 32 random bytes, so a plain hash is as good as a slow one: there is
nothing to guess.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import ApiKey
from storage.webhook_signing import generate_secret

KEY_PREFIX = "iq_"


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    secret: str
    webhook_secret: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(session: Session, *, name: str, is_admin: bool, now: datetime, key: str | None = None,
               webhook_secret: str | None = None) -> NewKey:
    """Store a new key (generated unless given) and return it with its one-time secrets."""
    secret = key or generate_key()
    record = ApiKey(
        name=name,
        prefix=secret[:10],
        key_hash=hash_key(secret),
        is_admin=is_admin,
        created_at=now,
        webhook_secret=webhook_secret or generate_secret(),
    )
    session.add(record)
    session.flush()
    return NewKey(record=record, secret=secret, webhook_secret=record.webhook_secret)


def find_key(session: Session, key: str) -> ApiKey | None:
    """The active key with this secret, or None."""
    stmt = select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    return session.execute(stmt).scalar_one_or_none()


def ensure_key(session: Session, *, key: str, name: str, is_admin: bool, now: datetime,
               webhook_secret: str | None = None) -> bool:
    """Create this exact key unless it exists. True when it was created."""
    exists = session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).first()
    if exists:
        return False
    create_key(session, name=name, is_admin=is_admin, now=now, key=key, webhook_secret=webhook_secret)
    return True


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.id)).scalars())


def revoke_key(session: Session, key_id: int, *, now: datetime) -> bool:
    result = session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
