"""The whole path over HTTP against real processes, on both topologies:
submit → queue → worker → object storage → poll → fetch the images."""

from __future__ import annotations

import base64
import time

import httpx
import numpy as np
import pytest

from tests.conftest import TINY_SLUG
from tests.support.images import box_mask, decode, job_body, scene
from tests.support.stack import Stack


def fetch_outputs(stack: Stack, job_id: str) -> tuple[dict, list[np.ndarray]]:
    with stack.client() as client:
        result = client.get(f"/v2/requests/{job_id}")
    assert result.status_code == 200, result.text
    body = result.json()
    images = []
    for url in body["output"]:
        response = httpx.get(url, timeout=30)  # a plain GET: signed links need no key
        assert response.status_code == 200, url
        images.append(np.asarray(decode(response.content).convert("RGB")))
    return body, images


def test_submit_answers_queued_with_absolute_urls(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post("/v2/erase", json=job_body())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "QUEUED"
    job_id = body["request_id"]
    assert body["status_url"] == f"{stack.base_url}/v2/requests/{job_id}/status"
    assert body["response_url"] == f"{stack.base_url}/v2/requests/{job_id}"
    stack.wait(job_id)


def test_erase_job_completes_and_fills_the_hole(stack: Stack) -> None:
    job_id = stack.submit("erase", job_body(size=(96, 64)))
    status = stack.wait(job_id)
    assert status["status"] == "COMPLETED", status
    body, images = fetch_outputs(stack, job_id)
    assert body["metrics"]["inference_time"] > 0
    assert body["metrics"]["queue_time"] >= 0
    assert body["expires_at"]
    (out,) = images
    original = np.asarray(scene((96, 64)))
    hole = np.asarray(box_mask((96, 64))) > 127
    assert out.shape == original.shape
    assert np.array_equal(out[~hole], original[~hole]), "kept pixels changed"
    # The yellow box sat inside the mask; Telea fills it from the gradient around it.
    assert not np.any(np.all(out[hole] == (250, 220, 10), axis=-1)), "the hole still holds the box"


def test_tiny_diffusers_job_keeps_unmasked_pixels_exactly(stack: Stack) -> None:
    job_id = stack.submit(TINY_SLUG, job_body(seed=1234, samples=2, num_inference_steps=3))
    status = stack.wait(job_id)
    assert status["status"] == "COMPLETED", status
    body, images = fetch_outputs(stack, job_id)
    assert body["seed"] == 1234 and body["seeds"] == [1234, 1235]
    assert len(images) == 2
    original = np.asarray(scene())
    hole = np.asarray(box_mask()) > 127
    for out in images:
        assert np.array_equal(out[~hole], original[~hole]), "unmasked pixels differ from the input"
        assert not np.array_equal(out[hole], original[hole]), "the masked area was not repainted"
    assert not np.array_equal(images[0], images[1]), "two samples with different seeds are identical"


def test_same_seed_gives_the_same_image(stack: Stack) -> None:
    first = stack.submit(TINY_SLUG, job_body(seed=77, scheduler="Euler a"))
    second = stack.submit(TINY_SLUG, job_body(seed=77, scheduler="Euler a"))
    other = stack.submit(TINY_SLUG, job_body(seed=78, scheduler="Euler a"))
    for job_id in (first, second, other):
        assert stack.wait(job_id)["status"] == "COMPLETED"
    (a,), (b,), (c,) = (fetch_outputs(stack, j)[1] for j in (first, second, other))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_seed_is_resolved_and_reported(stack: Stack) -> None:
    job_id = stack.submit(TINY_SLUG, job_body(seed=-1))
    stack.wait(job_id)
    body, _ = fetch_outputs(stack, job_id)
    assert 0 <= body["seed"] <= 999_999_999_999_999
    assert body["params"]["seed"] == body["seed"]


def test_base64_output_inline(stack: Stack) -> None:
    job_id = stack.submit("erase", job_body(base64=True))
    stack.wait(job_id)
    with stack.client() as client:
        inline = client.get(f"/v2/requests/{job_id}").json()
        as_urls = client.get(f"/v2/requests/{job_id}", params={"base64": "false"}).json()
    assert inline["output_format"] == "base64"
    image = decode(base64.b64decode(inline["output"][0]))
    assert image.size == (64, 64)
    assert as_urls["output"][0].startswith("http")


def test_progress_and_queue_position_are_visible(stack: Stack) -> None:
    slow = job_body(num_inference_steps=16, strength=1.0)
    ids = [stack.submit(TINY_SLUG, slow) for _ in range(3)]
    with stack.client() as client:
        last = client.get(f"/v2/requests/{ids[-1]}/status").json()
        assert last["status"] == "QUEUED"
        assert last["queue_position"] >= 1
        seen_progress = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = client.get(f"/v2/requests/{ids[0]}/status").json()
            if body["status"] == "PROCESSING" and 0 < body["progress"]["step"] < body["progress"]["total"]:
                seen_progress = body["progress"]
                break
            if body["status"] in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.01)
    assert seen_progress is not None, "never saw a PROCESSING job part-way through"
    assert seen_progress["total"] == 16
    assert 0 < seen_progress["percent"] < 100
    for job_id in ids:
        assert stack.wait(job_id)["status"] == "COMPLETED"


def test_result_before_completion_is_202_with_the_status(stack: Stack) -> None:
    job_id = stack.submit(TINY_SLUG, job_body(num_inference_steps=10))
    with stack.client() as client:
        response = client.get(f"/v2/requests/{job_id}")
    if response.status_code == 202:
        assert response.json()["status"] in ("QUEUED", "PROCESSING")
    else:  # the worker was quicker than this poll
        assert response.status_code == 200 and response.json()["status"] == "COMPLETED"
    stack.wait(job_id)


def test_failed_job_is_422_with_an_error(stack: Stack, tmp_path) -> None:
    stack.register_missing_model("missing-weights", tmp_path)
    job_id = stack.submit("missing-weights", job_body())
    status = stack.wait(job_id)
    assert status["status"] == "FAILED"
    with stack.client() as client:
        polled = client.get(f"/v2/requests/{job_id}/status")
        result = client.get(f"/v2/requests/{job_id}")
    for response in (polled, result):
        assert response.status_code == 422
        body = response.json()
        assert body["status"] == "FAILED"
        assert body["error_code"] == "model_unavailable"
        assert "missing-weights" in body["error"] and "could not be loaded" in body["error"]
        assert str(tmp_path) not in body["error"], "the error leaks a server path"


def test_unknown_request_is_404(stack: Stack) -> None:
    with stack.client() as client:
        for path in ("/v2/requests/0000/status", "/v2/requests/0000"):
            response = client.get(path)
            assert response.status_code == 404
            assert "not found" in response.json()["error"]


def test_another_keys_job_is_404_not_403(stack: Stack) -> None:
    job_id = stack.submit("erase", job_body(), key=stack.admin_key)
    stack.wait(job_id, key=stack.admin_key)
    with stack.client(stack.user_key) as client:
        assert client.get(f"/v2/requests/{job_id}/status").status_code == 404
        assert client.get(f"/v2/requests/{job_id}").status_code == 404


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "iq_not-a-real-key"}, {"x-api-key": ""}])
@pytest.mark.parametrize(
    "method,path",
    [("POST", "/v2/erase"), ("GET", "/v2/requests/x/status"), ("GET", "/v2/requests/x"), ("GET", "/v2/models")],
)
def test_missing_or_unknown_key_is_401(embedded: Stack, headers: dict, method: str, path: str) -> None:
    response = httpx.request(
        method, embedded.base_url + path, headers=headers, json=job_body() if method == "POST" else None
    )
    assert response.status_code == 401
    assert "key" in response.json()["error"]


def test_healthz_needs_no_key(embedded: Stack) -> None:
    assert httpx.get(f"{embedded.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{embedded.base_url}/readyz").json()
    assert ready["status"] == "ready", ready
