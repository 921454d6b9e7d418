"""Webhook signatures (storage.egress.signing): tampered bodies, old timestamps and other secrets fail."""

from __future__ import annotations

import time

import pytest

from storage.egress.signing import WebhookVerificationError, generate_secret, sign, signature_headers, verify


def test_verify_rejects_tampering_and_old_timestamps() -> None:
    secret = generate_secret()
    body = b'{"type":"job.completed"}'
    now = int(time.time())
    headers = signature_headers([secret], "msg_1", now, body)
    verify(secret, headers, body, now=now)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body.replace(b"completed", b"failed"), now=now)
    with pytest.raises(WebhookVerificationError):
        verify(secret, signature_headers([secret], "msg_1", now - 301, body), body, now=now)
    with pytest.raises(WebhookVerificationError):
        verify(generate_secret(), headers, body, now=now)
    assert sign(secret, "msg_1", now, body) == headers["webhook-signature"]
