"""Keys and limits over HTTP, on both topologies: 403 for a model a key may not use or an admin
route, 406 when out of credits (taken atomically, given back when the job FAILS), 429 with
Retry-After from the per-key token bucket (Redis in production, the database when embedded).

The in-process half (admin routes, the configured default rate) is tests/api/test_deps.py."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from storage.database.models import ApiKey
from tests.conftest import TINY_SLUG
from tests.support.db import job_row, stack_session
from tests.support.images import job_body
from tests.support.stack import Stack


def new_key(stack: Stack, *options: str) -> tuple[int, str]:
    """A user key made with `inpaint-admin keys create` and these limit options: (id, secret)."""
    out = stack.cli("inpaint-admin", "keys", "create", "--name", "limits-test", *options)
    match = re.search(r"#(\d+) \(user\): (iq_\S+)", out)
    assert match, out
    return int(match.group(1)), match.group(2)


def post(stack: Stack, key: str, model: str = "erase", **overrides: Any) -> httpx.Response:
    with stack.client(key) as client:
        return client.post(f"/v2/{model}", json=job_body(**overrides))


def credits_of(stack: Stack, key_id: int) -> int | None:
    with stack_session(stack) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        return key.credits


def test_a_key_limited_to_some_models_gets_403_for_the_others(stack: Stack) -> None:
    _, key = new_key(stack, "--models", "erase")
    refused = post(stack, key, TINY_SLUG)
    assert refused.status_code == 403
    assert refused.json()["error"] == f"this key may not use model '{TINY_SLUG}'; it may use: erase"
    accepted = post(stack, key, "erase")
    assert accepted.status_code == 200, accepted.text
    stack.wait(accepted.json()["request_id"], key=key)


def test_credits_pay_for_images_and_run_out_with_406(stack: Stack) -> None:
    key_id, key = new_key(stack, "--credits", "3")
    first = post(stack, key, samples=2)
    assert first.status_code == 200, first.text
    assert credits_of(stack, key_id) == 1
    short = post(stack, key, samples=2)
    assert short.status_code == 406
    assert short.json()["error"] == "this key is out of credits: 1 left, this request needs 2 (one per image)"
    assert post(stack, key, samples=1).status_code == 200
    assert post(stack, key, samples=1).status_code == 406
    assert credits_of(stack, key_id) == 0
    stack.wait(first.json()["request_id"], key=key)
    assert credits_of(stack, key_id) == 0, "a COMPLETED job gave its credits back"


def test_racing_submits_cannot_spend_more_credits_than_there_are(stack: Stack) -> None:
    key_id, key = new_key(stack, "--credits", "5")
    racers = 8  # within INPAINT_MAX_REQUESTS_PER_KEY (16): more at once would be refused 429 before the credits
    with ThreadPoolExecutor(max_workers=racers) as pool:
        codes = list(pool.map(lambda _: post(stack, key).status_code, range(racers)))
    assert sorted(codes) == [200] * 5 + [406] * 3, codes
    assert credits_of(stack, key_id) == 0


def test_a_failed_job_gives_its_credits_back(stack: Stack, tmp_path) -> None:
    stack.register_missing_model("no-weights-credits", tmp_path)
    key_id, key = new_key(stack, "--credits", "2")
    response = post(stack, key, "no-weights-credits", samples=2)
    assert response.status_code == 200, response.text
    job_id = response.json()["request_id"]
    assert job_row(stack, job_id).credits_charged == 2  # the job may fail before we could read the key
    assert stack.wait(job_id, key=key)["status"] == "FAILED"
    assert credits_of(stack, key_id) == 2


def test_rate_limit_is_429_with_retry_after_and_can_be_lifted(stack: Stack) -> None:
    """One submit a minute, three at once. Refused bodies (404: no such model) still take a token."""
    key_id, key = new_key(stack, "--rate", "1", "--burst", "3")
    codes = [post(stack, key, "no-such-model").status_code for _ in range(3)]
    assert codes == [404, 404, 404]
    limited = post(stack, key, "no-such-model")
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert limited.json()["retry_after"] == retry_after
    assert "1 jobs a minute, 3 at once" in limited.json()["error"]
    stack.cli("inpaint-admin", "keys", "update", str(key_id), "--rate", "0")
    assert post(stack, key, "no-such-model").status_code == 404


def test_racing_submits_get_exactly_burst_tokens(stack: Stack) -> None:
    _, key = new_key(stack, "--rate", "1", "--burst", "4")
    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(lambda _: post(stack, key, "no-such-model").status_code, range(16)))
    assert sorted(codes) == [404] * 4 + [429] * 12, codes
