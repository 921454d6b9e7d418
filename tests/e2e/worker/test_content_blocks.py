"""Content blocks over HTTP: what an image the safety checker flags does, on the embedded stack.

The registry points the safety checker at the tiny random one with score_offset 2, so
every checked image is flagged (tests.e2e.worker.test_xl_flow). Segmind routes block
(FAILED content_blocked, nothing stored, credits given back); the Stable Diffusion API
routes replace; a key's setting and a request's `nsfw_action` override the route's.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from storage.contract.assets import AssetSpec
from storage.database.assets import register_asset
from tests.e2e.api.test_access import credits_of, new_key
from tests.e2e.worker.test_flow import fetch_outputs
from tests.e2e.worker.test_xl_flow import with_tiny_assets
from tests.support.db import stack_session
from tests.support.images import b64, box_mask, job_body, png_bytes, scene
from tests.support.stack import Stack

CHECK = "/api/v1/enterprise/nsfw_image_check"


@pytest.fixture
def flagged(embedded: Stack, tiny_assets, tiny_model_dir) -> Stack:
    return with_tiny_assets(embedded, tiny_assets, tiny_model_dir)


def run(stack: Stack, body: dict, key: str | None = None, model: str = "tiny-sd15") -> tuple[dict, dict]:
    job_id = stack.submit(model, body, key=key)
    status = stack.wait(job_id, key=key)
    with stack.client(key) as client:
        result = client.get(f"/v2/requests/{job_id}")
    return status, result.json()


def assert_blocked(status: dict, result: dict) -> None:
    assert status["status"] == "FAILED" and status["error_code"] == "content_blocked", status
    assert "safety checker" in status["error"] and not result.get("output"), result


def test_segmind_route_fails_the_job_and_gives_the_credit_back(flagged: Stack) -> None:
    key_id, key = new_key(flagged, "--credits", "3")
    status, result = run(flagged, job_body(safety_checker=True, samples=2), key=key)
    assert_blocked(status, result)
    assert credits_of(flagged, key_id) == 3, "a blocked job costs nothing"


def test_stable_diffusion_api_route_replaces_and_reports(flagged: Stack) -> None:
    body = {
        "key": flagged.user_key,
        "model_id": "tiny-sd15",
        "prompt": "a red apple",
        "init_image": b64(scene()),
        "mask_image": b64(box_mask()),
        "width": "64",
        "height": "64",
        "safety_checker": "yes",
        "safety_checker_type": "black",
    }
    with flagged.client() as client:
        answer = client.post("/api/v1/enterprise/inpaint", json=body).json()
    job_id = answer["meta"]["file_prefix"]
    assert flagged.wait(job_id)["status"] == "COMPLETED"
    result, (image,) = fetch_outputs(flagged, job_id)
    assert result["nsfw"] == [True] and image.max() == 0


def test_a_request_asks_for_replacement_on_a_segmind_route(flagged: Stack) -> None:
    status, _ = run(flagged, job_body(safety_checker=True, safety_checker_type="black", nsfw_action="replace"))
    assert status["status"] == "COMPLETED", status
    result, (image,) = fetch_outputs(flagged, status["request_id"])
    assert result["nsfw"] == [True] and image.max() == 0


def test_a_keys_setting_overrides_the_route_and_a_request_overrides_the_key(flagged: Stack) -> None:
    key_id, key = new_key(flagged, "--nsfw-action", "replace")
    status, _ = run(flagged, job_body(safety_checker=True), key=key)
    assert status["status"] == "COMPLETED", status
    status, result = run(flagged, job_body(safety_checker=True, nsfw_action="block"), key=key)
    assert_blocked(status, result)
    flagged.cli("inpaint-admin", "keys", "update", str(key_id), "--nsfw-action", "route")
    assert_blocked(*run(flagged, job_body(safety_checker=True), key=key))


def test_nsfw_action_needs_the_checker(flagged: Stack) -> None:
    with flagged.client() as client:
        response = client.post("/v2/tiny-sd15", json=job_body(nsfw_action="block"))
    assert response.status_code == 400 and response.json()["error"].startswith("nsfw_action"), response.text


@contextlib.contextmanager
def api_env(stack: Stack, **env: str) -> Iterator[None]:
    """The stack's API restarted with `env` for the block, then restarted as it was."""
    stack.stop("api")
    stack.start("api", "inpaint-api", env=env)
    try:
        stack.wait_ready()
        yield
    finally:
        stack.stop("api")
        stack.start_api()


def test_always_checks_a_job_that_did_not_ask(flagged: Stack) -> None:
    with api_env(flagged, INPAINT_SAFETY_CHECKER="always"):
        assert_blocked(*run(flagged, job_body()))
        status, _ = run(flagged, job_body(nsfw_action="replace"))
        assert status["status"] == "COMPLETED"
        result, (image,) = fetch_outputs(flagged, status["request_id"])
        assert result["nsfw"] == [True] and not np.array_equal(image, np.asarray(scene()))
        erased, _ = run(flagged, job_body(), model="erase")
        assert erased["status"] == "COMPLETED", "erase paints nothing new and is not checked"


def nsfw_check(stack: Stack, files: dict | None = None, **body: object) -> httpx.Response:
    with stack.client() as client:
        if files is not None:
            return client.post(CHECK, data={"key": stack.user_key, **body}, files=files)
        return client.post(CHECK, json={"key": stack.user_key, **body})


def set_score_offset(stack: Stack, tiny_assets, offset: float) -> None:
    spec = AssetSpec(
        kind="safety_checker", name="default", source=str(tiny_assets["safety"]), options={"score_offset": offset}
    )
    with stack_session(stack) as session:
        register_asset(session, spec, now=datetime.now(UTC))


def test_nsfw_image_check_answers_the_checkers_verdict(flagged: Stack, tiny_assets) -> None:
    """The Stable Diffusion API enterprise nsfw_image_check: the registered checker runs on a worker; with
    score_offset 2 it flags every image, with -2 none (the same model: only its registration changed)."""
    answer = nsfw_check(flagged, init_image=b64(scene()), track_id=7)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"id": None} == {
        "status": "success",
        "id": None,
        "nsfw": True,
        "has_nsfw_concept": True,
        "checker": "default",
        "track_id": 7,
    }
    set_score_offset(flagged, tiny_assets, -2.0)
    try:
        as_file = nsfw_check(flagged, files={"image": ("scene.png", png_bytes(scene()), "image/png")})
    finally:
        set_score_offset(flagged, tiny_assets, 2.0)
    assert as_file.status_code == 200 and as_file.json()["nsfw"] is False, as_file.text


def test_nsfw_image_check_refuses_what_it_cannot_check(flagged: Stack) -> None:
    not_an_image = nsfw_check(flagged, init_image=base64.b64encode(b"plain text, not pixels").decode())
    assert not_an_image.status_code == 400 and "init_image" in not_an_image.json()["error"], not_an_image.text
    nothing = nsfw_check(flagged)
    assert nothing.status_code == 400 and "init_image" in nothing.json()["error"], nothing.text
    with flagged.client() as client:
        anonymous = client.post(CHECK, json={"init_image": b64(scene())}, headers={"x-api-key": ""})
    assert anonymous.status_code == 401, anonymous.text


def test_a_batch_blocks_only_its_flagged_items_and_charges_only_the_rest(flagged: Stack) -> None:
    """/v2/batch is Segmind's semantics per item: the item that asks for the checker (every image is
    flagged) ends FAILED content_blocked at no cost; its neighbours complete and are charged."""
    key_id, key = new_key(flagged, "--credits", "5")
    items = [
        {"model": "tiny-sd15", **job_body(seed=1)},
        {"model": "tiny-sd15", **job_body(seed=2, safety_checker=True)},
        {"model": "tiny-sd15", **job_body(seed=3)},
    ]
    with flagged.client(key) as client:
        answer = client.post("/v2/batch", json={"requests": items}).json()
    assert answer["accepted"] == 3, answer
    states = [flagged.wait(item["request_id"], key=key) for item in answer["items"]]
    assert [s["status"] for s in states] == ["COMPLETED", "FAILED", "COMPLETED"], states
    assert states[1]["error_code"] == "content_blocked"
    assert credits_of(flagged, key_id) == 3, "two images charged, the blocked one given back"
