"""Idempotency-Key on submit routes: the same key and body within 24 h return the original
result; the same key with another body is a conflict (409).

The key is reserved in the same transaction that creates the job, so of two identical
submits racing, exactly one creates a job and the other returns its id.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage.database.models import IdempotencyKey
from storage.errors import Conflict

TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255


def request_hash(route: str, body: dict[str, Any]) -> str:
    """Of the route and the parsed body: whitespace and key order do not matter."""
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_previous(session: Session, *, api_key_id: int, key: str, digest: str, now: datetime) -> str | None:
    """The result id of an earlier identical request, None if none within 24 h; Conflict if the body differs."""
    row = session.get(IdempotencyKey, (api_key_id, key))
    if row is None or row.created_at <= now - TTL:
        return None
    if row.request_hash != digest:
        raise Conflict(f"Idempotency-Key {key!r} was used with a different request body in the last 24 hours")
    return row.result_id


def reserve(session: Session, *, api_key_id: int, key: str, digest: str, result_id: str, now: datetime) -> None:
    """Add the key in the caller's transaction; a concurrent identical request makes the commit fail."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key, IdempotencyKey.created_at <= now - TTL
        )
    )
    session.add(
        IdempotencyKey(api_key_id=api_key_id, key=key, request_hash=digest, result_id=result_id, created_at=now)
    )
    session.flush()
