"""The SDK's verify_webhook against a real signed delivery, and against tampered or stale ones."""

from __future__ import annotations

import base64
import os
import time

import pytest
from inpaint_client import Client, WebhookVerificationError, verify_webhook

from tests.support.http_server import Reply, ScriptedServer
from tests.support.images import box_mask, scene
from tests.support.stack import Stack


def delivered(server: ScriptedServer, path: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        posts = [r for r in server.received if r.path == path]
        if posts:
            return posts[0]
        time.sleep(0.1)
    raise AssertionError("no webhook was delivered")


def other_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_verify_webhook_on_a_real_delivery(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/hook"] = Reply(204)
    secret = embedded.user_webhook_secret
    with Client(embedded.base_url, embedded.user_key) as client:
        job = client.submit(
            "erase", prompt="-", image=scene(), mask=box_mask(), webhook=f"{http_server.url}/hook", track_id="sdk-7"
        )
        job.wait(interval=0.1)
    post = delivered(http_server, "/hook")
    headers, body = post.headers, post.body

    payload = verify_webhook(headers, body, secret)
    assert payload["request_id"] == job.request_id and payload["type"] == "job.completed"
    assert payload["track_id"] == "sdk-7"
    assert verify_webhook(list(headers.items()), body.decode(), [other_secret(), secret]) == payload
    stamp = int(headers["webhook-timestamp"])
    assert verify_webhook(headers, body, secret, now=stamp + 299)["request_id"] == job.request_id

    rotated = {
        **headers,
        "webhook-signature": f"v1,{base64.b64encode(os.urandom(32)).decode()} {headers['webhook-signature']}",
    }
    assert verify_webhook(rotated, body, secret)["request_id"] == job.request_id, "any one signature may match"

    refusals = {
        "tampered body": (headers, body.replace(b"COMPLETED", b"FAILED"), secret, {}),
        "another secret": (headers, body, other_secret(), {}),
        "too old": (headers, body, secret, {"now": stamp + 301}),
        "from the future": (headers, body, secret, {"now": stamp - 301}),
        "narrow tolerance": (headers, body, secret, {"now": stamp + 10, "tolerance": 5}),
        "other id": ({**headers, "webhook-id": "msg_other"}, body, secret, {}),
        "moved timestamp": ({**headers, "webhook-timestamp": str(stamp + 1)}, body, secret, {}),
        "only a bad signature": ({**headers, "webhook-signature": "v1,AAAA"}, body, secret, {}),
        "no signature": ({k: v for k, v in headers.items() if k != "webhook-signature"}, body, secret, {}),
        "not a number": ({**headers, "webhook-timestamp": "soon"}, body, secret, {}),
    }
    for name, (hdrs, raw, key, options) in refusals.items():
        with pytest.raises(WebhookVerificationError):
            verify_webhook(hdrs, raw, key, **options)
            pytest.fail(f"{name} was accepted")
