"""Model management (the Stable Diffusion API enterprise endpoints) over HTTP: admin keys only, and it really
reaches the workers (warm-up, cache clearing) through the database."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.images import job_body
from tests.support.stack import Stack

ROUTES = [
    "get_all_models",
    "load_model",
    "verify_model",
    "delete_model",
    "load_vae",
    "clear_cache",
    "schedulers_list",
    "system_details",
]
BASE = "/api/v1/enterprise/"


def admin(stack: Stack, route: str, body: dict | None = None, *, header: bool = False) -> httpx.Response:
    """POST as the Stable Diffusion API enterprise does: the key in the body (or, with header=True, as x-api-key)."""
    payload = dict(body or {})
    headers = {"x-api-key": stack.admin_key} if header else {}
    if not header:
        payload["key"] = stack.admin_key
    return httpx.post(stack.base_url + BASE + route, json=payload, headers=headers, timeout=60)


def poll(check: Callable[[], Any], timeout: float = 240, explain: Callable[[], Any] = lambda: "") -> Any:
    """Wait for `check()` to be truthy. A worker's first model load also imports torch: be patient."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise TimeoutError(f"the condition did not hold in time: {explain()}")


@pytest.mark.parametrize("route", ROUTES)
def test_admin_routes_need_an_admin_key(embedded: Stack, route: str) -> None:
    url = embedded.base_url + BASE + route
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, json={"key": "iq_unknown"}).status_code == 401
    for attempt in (
        httpx.post(url, json={"key": embedded.user_key}),
        httpx.post(url, json={}, headers={"x-api-key": embedded.user_key}),
    ):
        assert attempt.status_code == 403, attempt.text
        assert "admin" in attempt.json()["error"]


def worker_online(stack: Stack) -> bool:
    return any(w["online"] for w in admin(stack, "system_details").json()["workers"])


def test_load_verify_use_clear_and_delete_a_model(stack: Stack, tiny_assets, tmp_path) -> None:
    source = shutil.copytree(tiny_assets["sdxl"], tmp_path / "my-xl")  # a source no other test loads
    # A worker carries out the commands issued after it started; one still starting would skip this load.
    poll(lambda: worker_online(stack))
    loaded = admin(
        stack,
        "load_model",
        {
            "model_id": "my-xl",
            "url": str(source),
            "model_type": "sdxl",
            "max_side": 128,
            "default_size": 64,
            "steps": {"min": 1, "max": 50, "default": 2},
            "strength": {"min": 0.1, "max": 1, "default": 1},
        },
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["status"] == "success"

    def verify() -> dict:
        return admin(stack, "verify_model", {"model_id": "my-xl"}, header=True).json()

    def explain() -> str:
        return f"verify: {verify()}; system: {admin(stack, 'system_details').json()}"

    warm = poll(lambda: verify() if verify()["loaded"] else None, explain=explain)
    assert warm["model_type"] == "sdxl" and warm["loaded_on"], warm

    job_id = stack.submit("my-xl", job_body(seed=2))
    assert stack.wait(job_id)["status"] == "COMPLETED"

    assert admin(stack, "clear_cache").json()["status"] == "success"
    poll(lambda: not verify()["loaded"], explain=explain)

    deleted = admin(stack, "delete_model", {"model_id": "my-xl"})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == ["model"], deleted.text
    with stack.client() as client:
        assert client.post("/v2/my-xl", json=job_body()).status_code == 404
    assert admin(stack, "verify_model", {"model_id": "my-xl"}).status_code == 404


def test_load_vae_then_a_job_uses_it(embedded: Stack, tiny_assets, tiny_model_dir) -> None:
    answer = admin(embedded, "load_vae", {"vae_id": "admin-vae", "vae_url": str(tiny_assets["vae"])})
    assert answer.status_code == 200, answer.text
    listing = admin(embedded, "get_all_models").json()
    assert {"kind": "vae", "name": "admin-vae"}.items() <= next(
        a for a in listing["assets"] if a["name"] == "admin-vae"
    ).items()
    assert any(m["slug"] == "sdxl-inpaint" for m in listing["models"])
    job_id = embedded.submit("tiny-sd-inpaint", job_body(vae="admin-vae"))
    assert embedded.wait(job_id)["status"] == "COMPLETED"
    verified = admin(embedded, "verify_model", {"model_id": "admin-vae"}).json()
    assert verified["model_type"] == "vae" and verified["loaded"], verified


def test_assets_load_under_their_kind(embedded: Stack, tiny_assets) -> None:
    answer = admin(
        embedded,
        "load_model",
        {
            "model_id": "admin-lora",
            "url": str(tiny_assets["lora_sd15"]),
            "model_type": "lora",
            "family": "sd15",
        },
    )
    assert answer.status_code == 200, answer.text
    job_id = embedded.submit("tiny-sd-inpaint", job_body(lora_model="admin-lora", lora_strength="0.7"))
    assert embedded.wait(job_id)["status"] == "COMPLETED"
    verified = admin(embedded, "verify_model", {"model_id": "admin-lora"}).json()
    assert verified["model_type"] == "lora" and not verified["loaded"] and "each job" in verified["note"]
    stray = admin(embedded, "load_model", {"model_id": "x", "url": "/x", "model_type": "lora", "max_side": 512})
    assert stray.status_code == 400 and stray.json()["error"].startswith("max_side")


def test_builtins_cannot_be_deleted_and_unknowns_are_404(embedded: Stack) -> None:
    builtin = admin(embedded, "delete_model", {"model_id": "sd1.5-inpainting"})
    assert builtin.status_code == 400 and "built in" in builtin.json()["error"]
    assert admin(embedded, "delete_model", {"model_id": "nothing-here"}).status_code == 404


def test_schedulers_list(embedded: Stack) -> None:
    body = admin(embedded, "schedulers_list").json()
    assert {"DPM++ 2M SDE Karras", "DDIM", "EulerDiscreteScheduler", "LCMScheduler"} <= set(body["schedulers"])
    assert "KarrasVeScheduler" in body["unsupported"]


def test_system_details_show_workers_and_queues(embedded: Stack) -> None:
    body = poll(lambda: (b := admin(embedded, "system_details").json())["workers"] and b)
    worker = body["workers"][0]
    assert worker["online"] and worker["name"].startswith("inpaint@")
    assert worker["device"] and worker["memory_total"] > 0 and isinstance(worker["resident"], list)
    assert isinstance(body["queues"], dict)
