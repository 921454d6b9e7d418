"""Verifying webhook deliveries (Standard Webhooks, https://www.standardwebhooks.com/).

    webhook-id:        msg_..., the same on every retry (deduplicate on it)
    webhook-timestamp: unix seconds of the attempt
    webhook-signature: "v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>", several space-separated
                       during a secret rotation

The secret is `whsec_` + base64; the HMAC key is the decoded bytes. Verify the raw body
exactly as received, before parsing it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from inpaint_client.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def secret_key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not whsec_ followed by base64") from None


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> bytes:
    """The base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` (without the `v1,` prefix)."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest)


def read_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[str, str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lower = {str(name).lower(): str(value) for name, value in items}
    values = [lower.get(name, "") for name in HEADERS]
    missing = [name for name, value in zip(HEADERS, values, strict=True) if not value]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    return values[0], values[1], values[2]


def verify_webhook(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str,
    secret: str | Iterable[str],
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> Any:
    """Check a delivery and return its parsed JSON body; WebhookVerificationError if it does not verify.

    `secret` may be several secrets (yours during your own rotation); any valid signature of any of
    them passes. Timestamps more than `tolerance` seconds from `now` (default: the clock) are refused,
    so a captured delivery cannot be replayed later. Signatures are compared in constant time."""
    msg_id, stamp, signatures = read_headers(headers)
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp is not unix seconds: {stamp!r}") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance:g} s from now")
    candidates = [s.partition(",")[2].encode() for s in signatures.split() if s.startswith("v1,")]
    for one in [secret] if isinstance(secret, str) else list(secret):
        expected = expected_signature(one, msg_id, stamp, raw)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            try:
                return json.loads(raw)
            except ValueError:
                raise WebhookVerificationError("the body is not JSON") from None
    raise WebhookVerificationError("no signature matches")
