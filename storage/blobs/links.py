"""HMAC-signed, expiring links: how a URL proves it was made by this service, without an API key."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlencode


def signature(subject: str, expires: int, key: bytes) -> str:
    return hmac.new(key, f"{subject}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(subject: str, *, expires_at: datetime, key: bytes) -> str:
    """`expires=...&signature=...` for a link to `subject` valid until `expires_at`."""
    expires = int(expires_at.timestamp())
    return urlencode({"expires": expires, "signature": signature(subject, expires, key)})


def is_valid(subject: str, expires: int, given: str, *, key: bytes, now: datetime) -> bool:
    return hmac.compare_digest(signature(subject, expires, key), given) and now.timestamp() < expires
