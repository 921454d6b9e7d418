"""Native additions: cancel, live events (SSE), idempotency, batch, listing; and v1 synchronous."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import TINY_SLUG
from tests.support.images import box_mask, decode, job_body, scene
from tests.support.stack import Stack, _keys_of
from tests.support.waiting import wait_until


def wait_status(stack: Stack, job_id: str, predicate: Any, timeout: float = 300) -> dict[str, Any]:
    with stack.client() as client:

        def check() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/v2/requests/{job_id}/status").json()
            return body if predicate(body) else None

        return wait_until(check, timeout, what=f"job {job_id} to reach the state", interval=0.05)  # type: ignore


def mid_run(body: dict[str, Any]) -> bool:
    return body["status"] == "PROCESSING" and body["progress"]["step"] > 0


def read_events(response: httpx.Response, limit: int | None = None) -> list[dict[str, Any]]:
    events, current = [], {}
    for line in response.iter_lines():
        if not line:
            if current:
                events.append(current)
                current = {}
                if limit and len(events) >= limit:
                    break
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        current[field] = json.loads(value) if field == "data" else value
    return events


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_queued_and_processing_jobs(stack: Stack) -> None:
    running = stack.submit(TINY_SLUG, job_body(num_inference_steps=50))
    queued = stack.submit(TINY_SLUG, job_body(num_inference_steps=50))
    with stack.client() as client:
        answer = client.post(f"/v2/requests/{queued}/cancel").json()
        assert answer == {"request_id": queued, "cancelled": True, "outcome": "cancelled", "status": "FAILED"}
        wait_status(stack, running, mid_run)
        assert client.post(f"/v2/requests/{running}/cancel").json()["cancelled"] is True
        for job_id in (queued, running):
            polled = client.get(f"/v2/requests/{job_id}/status")
            assert polled.status_code == 422
            assert polled.json()["status"] == "FAILED" and polled.json()["error"] == "cancelled"
        again = client.post(f"/v2/requests/{running}/cancel").json()
        assert again["cancelled"] is False and again["outcome"] == "already_failed"
    after = stack.submit("erase", job_body())
    assert stack.wait(after)["status"] == "COMPLETED", "the worker did not stop the cancelled job"
    worker_log = stack.log_messages("worker")
    assert f"taken away (cancelled, timed out or requeued); stopped request_id={running}" in worker_log
    assert f"job started (attempt 1) request_id={queued}" not in worker_log, "a cancelled job ran"


def test_cancel_after_completion_says_so(embedded: Stack) -> None:
    job_id = embedded.submit("erase", job_body())
    embedded.wait(job_id)
    with embedded.client() as client:
        answer = client.post(f"/v2/requests/{job_id}/cancel").json()
        assert answer["cancelled"] is False and answer["outcome"] == "already_completed"
        assert client.get(f"/v2/requests/{job_id}").json()["status"] == "COMPLETED"
        assert client.post("/v2/requests/nope/cancel").status_code == 404


# -- server-sent events ---------------------------------------------------------------------------


def test_events_stream_to_the_end(stack: Stack) -> None:
    job_id = stack.submit(TINY_SLUG, job_body(num_inference_steps=12))
    with stack.client() as client, client.stream("GET", f"/v2/requests/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    names = [e["event"] for e in events]
    assert names[-1] == "completed" and events[-1]["data"]["output"]
    assert "progress" in names
    ids = [tuple(int(p) for p in e["id"].split(".")) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"event ids do not increase: {ids}"
    steps = [e["data"]["progress"]["step"] for e in events if e["event"] == "progress"]
    assert steps == sorted(steps)


def test_events_resume_after_last_event_id(embedded: Stack) -> None:
    job_id = embedded.submit(TINY_SLUG, job_body(num_inference_steps=20))
    with embedded.client() as client:
        with client.stream("GET", f"/v2/requests/{job_id}/events") as response:
            first = read_events(response, limit=2)
        last_id = first[-1]["id"]
        headers = {"Last-Event-ID": last_id}
        with client.stream("GET", f"/v2/requests/{job_id}/events", headers=headers) as response:
            rest = read_events(response)
    assert rest, "nothing after resuming"
    key = [int(p) for p in last_id.split(".")]
    assert all([int(p) for p in e["id"].split(".")] > key for e in rest), "resume repeated old events"
    assert rest[-1]["event"] == "completed"


def test_events_of_unknown_job_is_404(embedded: Stack) -> None:
    with embedded.client() as client:
        assert client.get("/v2/requests/nope/events").status_code == 404


# -- idempotency ----------------------------------------------------------------------------------


def test_idempotency_key_returns_the_original_and_refuses_another_body(stack: Stack) -> None:
    body = job_body(seed=5)
    headers = {"Idempotency-Key": f"order-{time.time_ns()}"}
    with stack.client() as client:
        first = client.post("/v2/erase", json=body, headers=headers).json()
        second = client.post("/v2/erase", json=body, headers=headers).json()
        assert second["request_id"] == first["request_id"] and second.get("idempotent_replay") is True
        other = client.post("/v2/erase", json=job_body(seed=6), headers=headers)
        assert other.status_code == 409 and "different request body" in other.json()["error"]


def test_identical_submits_racing_create_one_job(embedded: Stack) -> None:
    body = job_body(seed=11)
    headers = {"Idempotency-Key": f"race-{time.time_ns()}"}
    answers: list[httpx.Response] = []
    gate = threading.Barrier(4)

    def fire() -> None:
        gate.wait()
        with embedded.client() as client:
            answers.append(client.post("/v2/erase", json=body, headers=headers))

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.json()["request_id"] for a in answers}) == 1


# -- batch ----------------------------------------------------------------------------------------


def test_batch_accepts_good_items_and_reports_bad_ones(stack: Stack) -> None:
    good = job_body()
    items = [
        {"model": "erase", **good},
        {"model": "erase", **good, "samples": 9},
        {"model": "no-such-model", **good},
        {**good},
        {"model": "erase", **good, "image": "not an image"},
        {"model": TINY_SLUG, **good, "seed": 3},
    ]
    with stack.client() as client:
        answer = client.post("/v2/batch", json={"requests": items}).json()
    assert answer["accepted"] == 2 and answer["rejected"] == 4
    statuses = [(i.get("http_status"), "request_id" in i) for i in answer["items"]]
    assert statuses == [(None, True), (400, False), (404, False), (400, False), (400, False), (None, True)]
    assert "samples" in answer["items"][1]["error"] and "no-such-model" in answer["items"][2]["error"]
    batch_id = answer["batch_id"]
    deadline = time.monotonic() + 300
    with stack.client() as client:
        while True:
            summary = client.get(f"/v2/batch/{batch_id}").json()
            if summary["done"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert summary["done"] and summary["counts"] == {"COMPLETED": 2, "REJECTED": 4}


def test_batch_limits(embedded: Stack) -> None:
    with embedded.client() as client:
        too_many = client.post("/v2/batch", json={"requests": [{"model": "erase"}] * 101})
        empty = client.post("/v2/batch", json={"requests": []})
        other = client.get("/v2/batch/unknown")
    assert too_many.status_code == 400 and "100" in too_many.json()["error"]
    assert empty.status_code == 400
    assert other.status_code == 404


# -- listing --------------------------------------------------------------------------------------


def test_listing_pages_through_the_callers_jobs(embedded: Stack) -> None:
    api_key, _ = _keys_of(embedded.cli("inpaint-admin", "keys", "create", "--name", "lister"))
    ids = [embedded.submit("erase", job_body(track_id=i), key=api_key) for i in range(3)]
    with embedded.client(api_key) as client:
        first = client.get("/v2/requests", params={"limit": 2}).json()
        second = client.get("/v2/requests", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [r["request_id"] for r in first["requests"] + second["requests"]] == ids[::-1]
        assert second["next_cursor"] is None
        for job_id in ids:
            embedded.wait(job_id, key=api_key)
        done = client.get("/v2/requests", params={"status": "COMPLETED"}).json()["requests"]
        assert {r["request_id"] for r in done} == set(ids)
        assert client.get("/v2/requests", params={"cursor": "garbage"}).status_code == 400


# -- v1 synchronous -------------------------------------------------------------------------------


def test_v1_answers_the_image(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post("/v1/erase", json=job_body(seed=3))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "3" and response.headers["x-request-id"]
    out = np.asarray(decode(response.content).convert("RGB"))
    keep = np.asarray(box_mask()) < 128
    assert np.array_equal(out[keep], np.asarray(scene())[keep])


def test_v1_base64_answers_json(embedded: Stack) -> None:
    with embedded.client() as client:
        answer = client.post("/v1/erase", json=job_body(base64=True)).json()
    assert decode(base64.b64decode(answer["image"])).size == (64, 64)
    assert answer["status"] == "COMPLETED" and answer["request_id"]


def test_v1_timeout_is_504_and_the_result_can_be_collected(embedded: Stack) -> None:
    with embedded.worker_stopped(), embedded.client() as client:
        response = client.post("/v1/erase", json=job_body())
    assert response.status_code == 504
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["status_url"] == response.headers["x-status-url"]
    with embedded.client() as client:
        deadline = time.monotonic() + 300
        while client.get(body["status_url"]).json()["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.get(body["response_url"]).json()["output"]


def test_v1_failed_job_is_422(embedded: Stack, tmp_path) -> None:
    # The worker's first diffusers load imports torch and diffusers: on busy cores longer than the
    # synchronous wait. One tiny job first, so that the failing load below is what is timed.
    assert embedded.wait(embedded.submit(TINY_SLUG, job_body()))["status"] == "COMPLETED"
    embedded.register_missing_model("v1-missing", tmp_path)
    with embedded.client() as client:
        response = client.post("/v1/v1-missing", json=job_body())
    assert response.status_code == 422 and response.json()["error_code"] == "model_unavailable"


# -- the published Segmind SDK's v2 sequence, replayed over HTTP -----------------------------------


@pytest.mark.parametrize("model,expected", [("erase", "COMPLETED"), ("sdk-missing", "FAILED")])
def test_segmind_sdk_sequence(embedded: Stack, tmp_path, model: str, expected: str) -> None:
    """submit; poll status_url once a second; COMPLETED and FAILED are terminal whatever the HTTP code."""
    if model == "sdk-missing":
        embedded.register_missing_model(model, tmp_path)
    with httpx.Client(headers={"x-api-key": embedded.user_key}, timeout=30) as sdk:
        submitted = sdk.post(f"{embedded.base_url}/v2/{model}", json=job_body())
        submitted.raise_for_status()
        job = submitted.json()
        while True:
            polled = sdk.get(job["status_url"]).json()
            if polled["status"] in ("COMPLETED", "FAILED"):
                break
            time.sleep(1.0)
        result = sdk.get(job["response_url"]).json()
    assert polled["status"] == expected and result["status"] == expected
    if expected == "COMPLETED":
        assert result["output"] and "inference_time" in result["metrics"]
    else:
        assert result["error"]
