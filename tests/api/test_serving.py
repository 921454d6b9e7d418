"""A model no online worker can serve is refused at submit, shown in /v2/models and /readyz?model= (api.serving).

The workers here are rows written as a worker's heartbeat writes them (storage.database.fleet);
tests/e2e/worker/test_serving.py has a real worker report on its own.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from storage.contract.specs import ModelSpec
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.fleet import record_heartbeat
from storage.database.jobs import utcnow
from storage.database.models import Job
from storage.database.registry import register_model
from storage.settings import load_settings
from tests.support.app import in_process_app
from tests.support.images import job_body

SOURCE = "org/some-inpainting"
MISSING_REASON = "its weights are not on this worker and the Hugging Face hub cannot be reached: ..."


class Fleet:
    """Writes worker heartbeats and model registrations into the app's database."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine = make_engine(load_settings(data_dir=tmp_path).resolved_database_url)
        self.sessions = make_session_factory(self.engine)

    def beat(
        self, name: str, weights: dict[str, Any], *, queues: tuple[str, ...] = ("inpaint",), age: float = 0
    ) -> None:
        with session_scope(self.sessions) as session:
            record_heartbeat(
                session,
                name=name,
                now=utcnow() - timedelta(seconds=age),
                hostname="h",
                pid=1,
                device="cpu",
                memory_total=1,
                memory_free=1,
                resident=[],
                busy=False,
                command_cursor=0,
                queues=list(queues),
                weights=weights,
            )

    def register(self, slug: str, source: str, *, queue: str = "inpaint") -> None:
        spec = ModelSpec(
            slug=slug, family="sd15", source=source, queue=queue, steps={"min": 1, "max": 10, "default": 2}
        )
        with session_scope(self.sessions) as session:
            register_model(session, spec, now=utcnow())

    def jobs(self) -> int:
        with session_scope(self.sessions) as session:
            return session.query(Job).count()


@pytest.fixture
def app(tmp_path: Path) -> tuple[TestClient, dict[str, str], Fleet]:
    client, keys = in_process_app(tmp_path, submit_unservable="refuse", worker_heartbeat_seconds=5)
    fleet = Fleet(tmp_path)
    fleet.register("some-model", SOURCE)
    yield client, keys, fleet
    fleet.engine.dispose()


def submit(client: TestClient, keys: dict[str, str], model: str = "some-model") -> Any:
    return client.post(f"/v2/{model}", json=job_body(), headers={"x-api-key": keys["user"]})


def fresh(client: TestClient) -> None:
    time.sleep(1.05)  # each API process reads the workers' reports at most once a second


def test_no_worker_online_is_a_503_naming_the_queue_and_nothing_is_queued(app) -> None:
    client, keys, fleet = app
    with client:
        response = submit(client, keys, "erase")
        assert response.status_code == 503, response.text
        assert response.json()["error"] == (
            "model 'erase' cannot be served right now: no inference worker consuming queue 'inpaint' is online"
        )
        assert response.headers["retry-after"]
        fleet.beat("gone", {SOURCE: {"state": "present"}}, age=60)  # three heartbeats late: offline
        fresh(client)
        assert submit(client, keys, "erase").status_code == 503
    assert fleet.jobs() == 0


def test_missing_weights_are_refused_with_the_workers_reason(app) -> None:
    client, keys, fleet = app
    fleet.beat("w1", {SOURCE: {"state": "missing", "reason": MISSING_REASON}})
    with client:
        response = submit(client, keys)
        assert response.status_code == 503
        assert response.json()["error"] == f"model 'some-model' cannot be served right now: {MISSING_REASON}"
        assert submit(client, keys, "erase").status_code == 200, "erase needs no weights"
        models = {
            m["slug"]: m["serving"]
            for m in client.get("/v2/models", headers={"x-api-key": keys["user"]}).json()["models"]
        }
        assert models["some-model"] == {"state": "missing", "servable": False, "reason": MISSING_REASON, "workers": 1}
        assert models["erase"]["servable"] and models["erase"]["state"] == "present"
        ready = client.get("/readyz", params={"model": "some-model"})
        assert ready.status_code == 503 and ready.json()["checks"]["model"].startswith("cannot be served: its weights")
        assert client.get("/readyz").status_code == 200, "the API itself is ready"
        assert client.get("/readyz", params={"model": "erase"}).status_code == 200
        assert client.get("/readyz", params={"model": "nope"}).status_code == 404
    assert fleet.jobs() == 1


@pytest.mark.parametrize("state", ["loaded", "present", "download"])
def test_one_worker_that_can_serve_is_enough(app, state: str) -> None:
    client, keys, fleet = app
    fleet.beat("w1", {SOURCE: {"state": "missing", "reason": MISSING_REASON}})
    fleet.beat("w2", {SOURCE: {"state": state}})
    with client:
        assert submit(client, keys).status_code == 200
        models = client.get("/v2/models", headers={"x-api-key": keys["user"]}).json()["models"]
        (serving,) = [m["serving"] for m in models if m["slug"] == "some-model"]
        assert serving == {"state": state, "servable": True, "reason": None, "workers": 2}


def test_a_failed_load_is_refused_and_a_just_registered_model_is_let_through(app) -> None:
    client, keys, fleet = app
    fleet.beat(
        "w1",
        {SOURCE: {"state": "failed", "reason": "it could not be loaded: its weights were not found or are incomplete"}},
    )
    fleet.register("new-model", "org/registered-a-moment-ago")
    with client:
        assert "could not be loaded" in submit(client, keys).json()["error"]
        assert submit(client, keys, "new-model").status_code == 200, "not reported yet: the worker will say"


def test_a_base_model_without_weights_is_refused_naming_it(app) -> None:
    client, keys, fleet = app
    fleet.beat(
        "w1",
        {
            "RunDiffusion/Juggernaut-XL-v9": {"state": "missing", "reason": MISSING_REASON},
            "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": {"state": "present"},
        },
    )
    with client:
        refused = client.post(
            "/v2/sdxl-inpaint", json=job_body(base_model="Juggernaut XL"), headers={"x-api-key": keys["user"]}
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == (
            f"base_model 'Juggernaut XL' of model 'sdxl-inpaint' cannot be served right now: {MISSING_REASON}"
        )
        other = client.post("/v2/sdxl-inpaint", json=job_body(base_model="SDXL"), headers={"x-api-key": keys["user"]})
        assert other.status_code == 200, other.text
    assert fleet.jobs() == 1, "only the servable base model's job is stored"


def test_only_workers_of_the_models_queue_count(app) -> None:
    client, keys, fleet = app
    fleet.register("gpu-model", SOURCE, queue="big-gpu")
    fleet.beat("w1", {SOURCE: {"state": "present"}}, queues=("inpaint",))
    with client:
        assert submit(client, keys).status_code == 200
        response = submit(client, keys, "gpu-model")
        assert response.status_code == 503 and "queue 'big-gpu'" in response.json()["error"]


def test_accept_queues_what_no_worker_can_serve(tmp_path: Path) -> None:
    client, keys = in_process_app(tmp_path, submit_unservable="accept")
    with client:
        assert submit(client, keys, "erase").status_code == 200
