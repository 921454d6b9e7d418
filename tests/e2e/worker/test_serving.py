"""A real worker says which models it can serve, and the API refuses the others at once (api.serving).

The stacks run with HF_HUB_OFFLINE=1 and an empty Hugging Face cache: a model on a hub id is
missing on their worker, as on a machine without its weights and without the hub.
"""

from __future__ import annotations

from typing import Any

from tests.support.images import job_body
from tests.support.stack import Stack
from tests.support.waiting import wait_until


def _readiness(stack: Stack, model: str) -> Any:
    with stack.client() as client:
        return client.get("/readyz", params={"model": model})


def test_hub_model_without_weights_is_refused_at_submit_saying_what_to_do(embedded: Stack) -> None:
    embedded.cli("inpaint-admin", "models", "register", "hub-only", "org/not-downloaded-inpainting", "--family", "sd15")
    ready = wait_until(
        lambda: (r := _readiness(embedded, "hub-only")).status_code == 503 and r, what="the worker to report it"
    )
    assert "hf download org/not-downloaded-inpainting" in ready.json()["checks"]["model"]
    with embedded.client() as client:
        response = client.post("/v2/hub-only", json=job_body())
        models = {m["slug"]: m["serving"] for m in client.get("/v2/models").json()["models"]}
    assert response.status_code == 503 and response.headers["retry-after"]
    error = response.json()["error"]
    assert error.startswith("model 'hub-only' cannot be served right now: its weights are not on this worker")
    assert "inpaint-admin models register" in error
    assert models["hub-only"]["state"] == "missing" and models["hub-only"]["workers"] >= 1
    assert _readiness(embedded, "erase").status_code == 200


def test_a_model_whose_load_failed_is_refused_after_its_first_job(embedded: Stack, tmp_path) -> None:
    embedded.register_missing_model("broken-weights", tmp_path)
    first = embedded.submit("broken-weights", job_body())
    assert embedded.wait(first)["error_code"] == "model_unavailable", "the first job finds out"

    def refused() -> Any:
        with embedded.client() as client:
            response = client.post("/v2/broken-weights", json=job_body())
        return response if response.status_code == 503 else None

    response = wait_until(refused, timeout=30, what="submits to the broken model to be refused")
    assert "could not be loaded" in response.json()["error"]
    assert str(tmp_path) not in response.json()["error"], "a worker's path is not shown to clients"
