"""API keys and what each may do. Only a sha256 of each key is stored; the key itself is
shown once, at creation, and never logged.

Keys are 32 random bytes, so a plain hash is as good as a slow one: there is
nothing to guess.

Limits per key (NULL means "none" or "the default"): the model slugs it may use,
its credits (one per image, taken at submit, given back when the job FAILS) and
its rate limit (api.ratelimit).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.database.models import ApiKey, Job
from storage.egress.signing import generate_secret

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


@dataclass(frozen=True)
class KeyLimits:
    """What a key may do; None: all models, unlimited credits, the configured rate, the route's content blocks."""

    allowed_models: list[str] | None = None
    credits: int | None = None
    rate_limit_per_minute: int | None = None
    rate_limit_burst: int | None = None
    nsfw_action: str | None = None
    """What a flagged image does for this key's jobs (storage.contract.content); None: the route's API's."""


def create_key(
    session: Session,
    *,
    name: str,
    is_admin: bool,
    now: datetime,
    key: str | None = None,
    limits: KeyLimits = KeyLimits(),
    webhook_secret: str | None = None,
) -> NewKey:
    """Store a new key (generated unless given) and return it with its one-time secrets."""
    secret = key or generate_key()
    record = ApiKey(
        name=name,
        prefix=secret[:10],
        key_hash=hash_key(secret),
        is_admin=is_admin,
        created_at=now,
        webhook_secret=webhook_secret or generate_secret(),
        **asdict(limits),
    )
    session.add(record)
    session.flush()
    return NewKey(record=record, secret=secret, webhook_secret=record.webhook_secret)


def find_key(session: Session, key: str) -> ApiKey | None:
    """The active key with this secret, or None."""
    stmt = select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    return session.execute(stmt).scalar_one_or_none()


def ensure_key(
    session: Session, *, key: str, name: str, is_admin: bool, now: datetime, webhook_secret: str | None = None
) -> bool:
    """Create this exact key unless it exists. True when it was created. Safe to race: every API
    process ensures the bootstrap key at start, and the loser of two inserts finds the key made."""
    exists = session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).first()
    if exists:
        return False
    try:
        with session.begin_nested():
            create_key(session, name=name, is_admin=is_admin, now=now, key=key, webhook_secret=webhook_secret)
    except IntegrityError:  # another process inserted the same key_hash between the read and the insert
        return False
    return True


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.id)).scalars())


def revoke_key(session: Session, key_id: int, *, now: datetime) -> bool:
    result = session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def update_key(session: Session, key_id: int, **changes: object) -> bool:
    """Set some of a key's KeyLimits fields (a None value clears the limit). False if there is no such key."""
    unknown = set(changes) - set(KeyLimits.__dataclass_fields__)
    if unknown:
        raise ValueError(f"not a key limit: {sorted(unknown)}")
    result = session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**changes))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def may_use_model(key: ApiKey, slug: str) -> bool:
    return key.allowed_models is None or slug in key.allowed_models


def charge_credits(session: Session, key_id: int, amount: int, *, limited: bool = True) -> int | None:
    """Take `amount` credits in one conditional UPDATE (it comes first: write before read on SQLite).

    Returns the credits taken: `amount`, or 0 for a key without a credit limit;
    None when the key has fewer than `amount` left (nothing is taken).

    `limited=False` (the key had no limit when the request began) writes nothing: submits of a
    key without a limit never queue on its row. A limit set meanwhile applies from the next submit.
    """
    if not limited:
        return 0
    taken = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, or_(ApiKey.credits.is_(None), ApiKey.credits >= amount))
        .values(credits=ApiKey.credits - amount)  # NULL (no limit) stays NULL
        .returning(ApiKey.credits)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        return None
    return 0 if taken.credits is None else amount


def refund_job_credits(session: Session, job_id: str) -> None:
    """Give back what the job's submit took. Call it once, in the transaction that made the job FAILED."""
    job = select(Job.api_key_id).where(Job.id == job_id).scalar_subquery()
    charged = select(Job.credits_charged).where(Job.id == job_id).scalar_subquery()
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == job, ApiKey.credits.is_not(None))
        .values(credits=ApiKey.credits + charged)
        .execution_options(synchronize_session=False)
    )
