"""Webhooks end to end: real API, real workers, a real receiver on loopback.

The stacks use a short retry schedule (0.5, 0.5, 1, 1, 2, 3 s) and a 3 s timeout.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest
import standardwebhooks

from storage.egress.signing import verify
from tests.support.http_server import Received, Reply, ScriptedServer
from tests.support.images import job_body
from tests.support.services import free_port
from tests.support.stack import Stack, _keys_of
from tests.support.waiting import wait_until


def scripted(*statuses: int) -> Callable[[Received], Reply]:
    """Answer the n-th request with statuses[n] (the last one repeats)."""
    seen = {"n": 0}

    def reply(_: Received) -> Reply:
        status = statuses[min(seen["n"], len(statuses) - 1)]
        seen["n"] += 1
        return Reply(status, b"ok")

    return reply


def webhook_log(stack: Stack, job_id: str, key: str | None = None) -> dict:
    with stack.client(key) as client:
        response = client.get(f"/v2/requests/{job_id}/webhooks")
    assert response.status_code == 200, response.text
    return response.json()


def terminal_event(stack: Stack, job_id: str) -> dict:
    """The job's terminal event, or {} while it is not written yet."""
    events = webhook_log(stack, job_id)["events"]
    return next((e for e in events if e["type"] in ("job.completed", "job.failed")), {"attempts": []})


def settled(stack: Stack, job_id: str) -> dict | None:
    events = [e for e in webhook_log(stack, job_id)["events"] if e["type"] != "job.progress"]
    return events[0] if events and events[0]["status"] != "pending" else None


def test_retried_until_2xx_with_one_webhook_id_and_valid_signatures(stack: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/hook"] = scripted(500, 500, 500, 200)
    job_id = stack.submit("erase", job_body(webhook=f"{http_server.url}/hook", track_id="order-42"))
    event = wait_until(lambda: settled(stack, job_id), what="the delivery to settle")
    assert event["status"] == "delivered"
    assert [a["status_code"] for a in event["attempts"]] == [500, 500, 500, 200]
    assert all(a["latency_ms"] >= 0 and a["at"] for a in event["attempts"])

    posts = [r for r in http_server.received if r.path == "/hook"]
    assert len(posts) == 4
    assert {r.headers["webhook-id"] for r in posts} == {event["webhook_id"]}
    library = standardwebhooks.Webhook(stack.user_webhook_secret)
    for request in posts:
        library.verify(request.body, request.headers)  # any Standard Webhooks library accepts it
        verify(stack.user_webhook_secret, request.headers, request.body, now=time.time())
    body = json.loads(posts[-1].body)
    assert body["type"] == "job.completed" and body["status"] == "COMPLETED"
    assert body["request_id"] == job_id and body["track_id"] == "order-42"
    assert body["output"] and body["output"][0].startswith("http")
    assert set(body) >= {"error", "seed", "metrics", "expires_at", "timestamp"}
    assert len({r.body for r in posts}) == 1, "retries must send the same body"


def test_failed_job_sends_job_failed(embedded: Stack, http_server: ScriptedServer, tmp_path) -> None:
    http_server.routes["/hook"] = Reply(204)
    embedded.register_missing_model("no-weights", tmp_path)
    job_id = embedded.submit("no-weights", job_body(webhook=f"{http_server.url}/hook"))
    wait_until(lambda: settled(embedded, job_id), what="delivery")
    body = json.loads(next(r for r in http_server.received if r.path == "/hook").body)
    assert body["type"] == "job.failed" and body["status"] == "FAILED"
    assert body["error_code"] == "model_unavailable" and "no-weights" in body["error"]
    assert body["output"] == []


def test_receiver_down_longer_than_the_first_retries_still_gets_it(embedded: Stack) -> None:
    port = free_port()
    job_id = embedded.submit("erase", job_body(webhook=f"http://127.0.0.1:{port}/late"))
    wait_until(lambda: len(terminal_event(embedded, job_id)["attempts"]) >= 3, what="three failed attempts")
    assert all(a["status_code"] is None and a["error"] for a in terminal_event(embedded, job_id)["attempts"])
    receiver = ScriptedServer(port)
    receiver.routes["/late"] = Reply(200)
    receiver.start()
    try:
        event = wait_until(lambda: settled(embedded, job_id), what="delivery once the receiver is up")
        assert event["status"] == "delivered"
        assert len([r for r in receiver.received if r.path == "/late"]) == 1
    finally:
        receiver.stop()


def test_redirect_is_a_failure_and_is_not_followed(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/moved"] = scripted(302, 302, 200)
    http_server.routes["/target"] = Reply(200)
    job_id = embedded.submit("erase", job_body(webhook=f"{http_server.url}/moved"))
    event = wait_until(lambda: settled(embedded, job_id), what="delivery")
    assert [a["status_code"] for a in event["attempts"]] == [302, 302, 200]
    assert not [r for r in http_server.received if r.path == "/target"], "a redirect was followed"


def test_410_stops_retries_and_disables_the_url_for_the_key(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/gone"] = Reply(410)
    url = f"{http_server.url}/gone"
    first = embedded.submit("erase", job_body(webhook=url))
    event = wait_until(lambda: settled(embedded, first), what="delivery")
    assert event["status"] == "disabled" and len(event["attempts"]) == 1
    second = embedded.submit("erase", job_body(webhook=url))
    assert wait_until(lambda: settled(embedded, second), what="second delivery")["status"] == "disabled"
    assert len([r for r in http_server.received if r.path == "/gone"]) == 1, "a disabled URL was called again"
    # Another key is not affected by this key's 410.
    third = embedded.submit("erase", job_body(webhook=url), key=embedded.admin_key)
    wait_until(
        lambda: (
            webhook_log(embedded, third, embedded.admin_key)["events"]
            and webhook_log(embedded, third, embedded.admin_key)["events"][0]["attempts"]
        ),
        what="admin attempt",
    )
    assert len([r for r in http_server.received if r.path == "/gone"]) == 2


def test_retry_after_is_honoured(embedded: Stack, http_server: ScriptedServer) -> None:
    calls: list[float] = []

    def busy_then_ok(_: Received) -> Reply:
        calls.append(time.monotonic())
        return Reply(429, b"", {"Retry-After": "3"}) if len(calls) == 1 else Reply(200)

    http_server.routes["/busy"] = busy_then_ok
    job_id = embedded.submit("erase", job_body(webhook=f"{http_server.url}/busy"))
    wait_until(lambda: settled(embedded, job_id), what="delivery")
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 2.9, "the retry came before Retry-After (the schedule alone says 0.5 s)"


def test_track_id_round_trips_exactly(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/t"] = Reply(200)
    unicode_id = ("注文-🧾-é" * 40)[:256]
    ids = [unicode_id, 9_007_199_254_740_993, "0042"]
    jobs = [embedded.submit("erase", job_body(webhook=f"{http_server.url}/t", track_id=t)) for t in ids]
    for job_id in jobs:
        wait_until(lambda j=job_id: settled(embedded, j), what="delivery")
    got = {json.loads(r.body)["request_id"]: json.loads(r.body)["track_id"] for r in http_server.received}
    assert [got[j] for j in jobs] == ids
    assert type(got[jobs[1]]) is int and type(got[jobs[2]]) is str
    with embedded.client() as client:
        too_long = client.post("/v2/erase", json=job_body(webhook=f"{http_server.url}/t", track_id="x" * 257))
    assert too_long.status_code == 400 and "track_id" in too_long.json()["error"]


def test_progress_events_are_sent_when_asked_for(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/p"] = Reply(200)
    body = job_body(webhook=f"{http_server.url}/p", webhook_events=["progress"], num_inference_steps=16)
    job_id = embedded.submit("tiny-sd-inpaint", body)
    wait_until(lambda: settled(embedded, job_id), what="delivery")
    types = [json.loads(r.body)["type"] for r in http_server.received if r.path == "/p"]
    assert "job.progress" in types and types[-1] == "job.completed"
    progress = [json.loads(r.body)["progress"] for r in http_server.received if b"job.progress" in r.body]
    assert all(0 < p["step"] < p["total"] == 16 for p in progress)
    for request in http_server.received:
        verify(embedded.user_webhook_secret, request.headers, request.body, now=time.time())


def test_redeliver_sends_again_with_the_same_webhook_id(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/r"] = Reply(200)
    job_id = embedded.submit("erase", job_body(webhook=f"{http_server.url}/r"))
    event = wait_until(lambda: settled(embedded, job_id), what="delivery")
    with embedded.client(embedded.admin_key) as other:
        assert other.post(f"/v2/requests/{job_id}/webhooks/redeliver").status_code == 404
        assert other.get(f"/v2/requests/{job_id}/webhooks").status_code == 404
    with embedded.client() as client:
        answer = client.post(f"/v2/requests/{job_id}/webhooks/redeliver")
    assert answer.status_code == 200 and answer.json()["webhook_id"] == event["webhook_id"]
    wait_until(lambda: len([r for r in http_server.received if r.path == "/r"]) == 2, what="redelivery")
    assert {r.headers["webhook-id"] for r in http_server.received} == {event["webhook_id"]}
    wait_until(lambda: len(terminal_event(embedded, job_id)["attempts"]) == 2, what="second attempt recorded")


def test_rotation_signs_with_both_secrets(embedded: Stack, http_server: ScriptedServer) -> None:
    api_key, old_secret = _keys_of(embedded.cli("inpaint-admin", "keys", "create", "--name", "rotating"))
    with embedded.client(api_key) as client:
        new_secret = client.post("/v2/webhook-secret/rotate").json()["webhook_secret"]
    assert new_secret != old_secret and new_secret.startswith("whsec_")
    http_server.routes["/rot"] = Reply(200)
    job_id = embedded.submit("erase", job_body(webhook=f"{http_server.url}/rot"), key=api_key)
    wait_until(lambda: http_server.received, what="delivery")
    request = http_server.received[0]
    assert json.loads(request.body)["request_id"] == job_id
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (old_secret, new_secret):
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)


def test_killing_the_webhook_worker_between_attempts_loses_nothing(
    embedded: Stack, http_server: ScriptedServer
) -> None:
    state = {"healthy": False}
    http_server.routes["/k"] = lambda _: Reply(200 if state["healthy"] else 503)
    job_id = embedded.submit("erase", job_body(webhook=f"{http_server.url}/k"))
    wait_until(lambda: terminal_event(embedded, job_id)["attempts"], what="a first failed attempt")
    embedded.stop("ops", sig=signal.SIGKILL)
    state["healthy"] = True
    time.sleep(2)
    assert terminal_event(embedded, job_id)["status"] == "pending"
    embedded.start_ops()
    event = wait_until(lambda: settled(embedded, job_id), timeout=90, what="delivery after the restart")
    assert event["status"] == "delivered"
    assert [r.headers["webhook-id"] for r in http_server.received if r.path == "/k"][-1] == event["webhook_id"]


def test_delivery_never_changes_the_job(embedded: Stack, http_server: ScriptedServer) -> None:
    http_server.routes["/never"] = Reply(500)
    job_id = embedded.submit("erase", job_body(webhook=f"{http_server.url}/never"))
    assert embedded.wait(job_id)["status"] == "COMPLETED"
    event = wait_until(lambda: settled(embedded, job_id), what="retries to run out")
    assert event["status"] == "failed" and len(event["attempts"]) == 7  # 1 + the 6 retries of the schedule
    with embedded.client() as client:
        assert client.get(f"/v2/requests/{job_id}").json()["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "url,words",
    [
        ("ftp://example.com/hook", ["http or https"]),
        ("not a url", ["http or https"]),
        ("http://10.0.0.8/hook", ["public"]),
        ("http://[fe80::1]/hook", ["public"]),
    ],
)
def test_bad_webhook_urls_are_400(embedded: Stack, url: str, words: list[str]) -> None:
    with embedded.client() as client:
        response = client.post("/v2/erase", json=job_body(webhook=url))
    assert response.status_code == 400
    assert response.json()["error"].startswith("webhook")
    for word in words:
        assert word in response.json()["error"]
