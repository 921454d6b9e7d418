"""Every request holds at most one pooled database connection at a time.

With 40 request threads and 40 pooled connections, that is what keeps concurrent
submits from deadlocking: a request that held one connection (the key lookup) while
asking for a second (the job row) could wait on a pool that requests like it had
drained, until the pool's 30 s timeout. Measured here on the real app and database by
counting check-outs, so it cannot depend on timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.support.app import in_process_app
from tests.support.images import job_body


@dataclass
class Checkouts:
    held: int = 0
    peak: int = 0

    def out(self, *_: object) -> None:
        self.held += 1
        self.peak = max(self.peak, self.held)

    def back(self, *_: object) -> None:
        self.held -= 1

    def take_peak(self) -> int:
        peak, self.peak = self.peak, self.held
        return peak


@pytest.fixture
def app(tmp_path) -> Iterator[tuple[TestClient, dict[str, str], Checkouts]]:
    client, keys = in_process_app(tmp_path)
    with client:
        engine = client.app.state.context.engine  # type: ignore[attr-defined]
        seen = Checkouts()
        event.listen(engine, "checkout", seen.out)
        event.listen(engine, "checkin", seen.back)
        yield client, {"x-api-key": keys["user"], "admin": keys["admin"]}, seen


def test_each_route_holds_one_connection_at_a_time(app) -> None:
    client, keys, seen = app
    key = {"x-api-key": keys["x-api-key"]}
    submitted = client.post("/v2/erase", json=job_body(webhook="https://hooks.example/x"), headers=key)
    assert submitted.status_code == 200, submitted.text
    job = submitted.json()["request_id"]
    calls = [
        ("submit", "POST", "/v2/erase", {"json": job_body()}, 200),
        ("status", "GET", f"/v2/requests/{job}/status", {}, 200),
        ("result", "GET", f"/v2/requests/{job}", {}, 202),
        ("list", "GET", "/v2/requests", {}, 200),
        ("models", "GET", "/v2/models", {}, 200),
        ("batch", "POST", "/v2/batch", {"json": {"requests": [{**job_body(), "model": "erase"}] * 2}}, 200),
        (
            "modelslab",
            "POST",
            "/api/v6/image_editing/inpaint",
            {
                "json": {
                    "key": key["x-api-key"],
                    "prompt": "x",
                    "init_image": job_body()["image"],
                    "mask_image": job_body()["mask"],
                    "model_id": "erase",
                    "instant_response": True,
                }
            },
            200,
        ),
        ("cancel", "POST", f"/v2/requests/{job}/cancel", {}, 200),
        ("webhook log", "GET", f"/v2/requests/{job}/webhooks", {}, 200),
        ("redeliver", "POST", f"/v2/requests/{job}/webhooks/redeliver", {}, 409),  # no terminal event: no worker here,
        ("events", "GET", f"/v2/requests/{job}/events", {}, 200),
    ]
    seen.take_peak()
    for name, method, path, kwargs, expected in calls:
        response = client.request(method, path, headers=key, **kwargs)
        assert response.status_code == expected, (name, response.text)
        assert seen.take_peak() == 1, f"{name} held more than one connection at once"
    assert client.get("/metrics", headers={"x-api-key": keys["admin"]}).status_code == 200
    assert seen.take_peak() == 1, "metrics held more than one connection at once"
    assert seen.held == 0, "a connection was not given back"
