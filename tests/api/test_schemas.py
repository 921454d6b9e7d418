"""The response models (api.schemas) describe the bodies the routes really send, in every job state.

Generated requests (tests/api/test_schemathesis.py) never make a valid job, so here real ones are
submitted to the app in process and moved through their states with the same storage functions a
worker uses; each answer's status must be documented for its route and its body match the schema
/openapi.json gives for that status.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient

from api import schemas
from api.context import AppContext
from storage.blobs.store import output_key
from storage.database.engine import session_scope
from storage.database.jobs import claim_job, complete_job, fail_job, record_progress, utcnow
from tests.support.app import in_process_app
from tests.support.images import box_mask, job_body, png_bytes


@dataclass
class Api:
    client: TestClient
    admin: dict[str, str]
    document: schemathesis.BaseSchema

    @property
    def context(self) -> AppContext:
        return self.client.app.state.context  # type: ignore[attr-defined,no-any-return]

    def call(self, method: str, template: str, path: str | None = None, **kwargs: Any) -> Any:
        """Send the request (to `path`, else `template`) and check the answer against `template`'s docs."""
        response = self.client.request(method, path or template, **{"headers": self.admin, **kwargs})
        operation = self.document[template][method]
        documented = {str(code) for code in operation.definition.raw["responses"]}
        assert str(response.status_code) in documented, (method, template, response.status_code, response.text)
        operation.validate_response(response)
        return response

    def submit(self) -> str:
        return str(self.call("POST", "/v2/{model}", "/v2/erase", json=job_body()).json()["request_id"])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    client, keys = in_process_app(tmp_path, sync_wait_seconds=0.2, modelslab_wait_seconds=0)
    with client:
        document = schemathesis.openapi.from_dict(closed(client.app.openapi()))  # type: ignore[attr-defined]
        yield Api(client, {"x-api-key": keys["admin"]}, document)


def closed(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every response model of api.schemas closed to keys it does not list, so that an
    undocumented key fails here. (Served, they stay open: clients must accept keys added later.)"""
    document = copy.deepcopy(document)
    for name, schema in document["components"]["schemas"].items():
        if isinstance(getattr(schemas, name, None), type) and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return document


def run(api: Api, job_id: str, *, outcome: str) -> None:
    """What a worker does: claim the job, report progress, then complete it with one image or fail it."""
    with session_scope(api.context.sessions) as session:
        assert claim_job(session, job_id, now=utcnow())
        assert record_progress(session, job_id, attempt=1, step=3, total=8)
    if outcome == "PROCESSING":
        return
    with session_scope(api.context.sessions) as session:
        if outcome == "FAILED":
            assert fail_job(session, job_id, code="model_unavailable", message="no worker", now=utcnow(), ttl=HOUR)
            return
        key = output_key(job_id, 1, 0)
        api.context.blobs.put(key, png_bytes(box_mask()))
        assert complete_job(
            session, job_id, attempt=1, output_keys=[key], output_seeds=[7], inference_time=0.5, now=utcnow(), ttl=HOUR
        )


HOUR = timedelta(hours=1)
STATUS_ROUTE = "/v2/requests/{job_id}/status"
RESULT_ROUTE = "/v2/requests/{job_id}"
FETCH_ROUTE = "/api/v6/image_editing/fetch/{job_id}"


@pytest.mark.parametrize(
    ("state", "status_code", "result_code", "fetch_code"),
    [
        ("QUEUED", 200, 202, 200),
        ("PROCESSING", 200, 202, 200),
        ("COMPLETED", 200, 200, 200),
        ("FAILED", 422, 422, 422),
    ],
)
def test_each_job_state_is_answered_as_documented(
    api: Api, state: str, status_code: int, result_code: int, fetch_code: int
) -> None:
    job_id = api.submit()
    if state != "QUEUED":
        run(api, job_id, outcome=state)
    status = api.call("GET", STATUS_ROUTE, f"/v2/requests/{job_id}/status")
    assert (status.status_code, status.json()["status"]) == (status_code, state)
    result = api.call("GET", RESULT_ROUTE, f"/v2/requests/{job_id}")
    assert result.status_code == result_code
    if state == "COMPLETED":
        inline = api.call("GET", RESULT_ROUTE, f"/v2/requests/{job_id}", params={"base64": True})
        assert inline.json()["output_format"] == "base64"
    fetched = api.call("POST", FETCH_ROUTE, f"/api/v6/image_editing/fetch/{job_id}", json={})
    assert fetched.status_code == fetch_code
    listed = api.call("GET", "/v2/requests", params={"limit": 1})
    assert [job["request_id"] for job in listed.json()["requests"]] == [job_id]
    api.call("GET", "/v2/requests/{job_id}/webhooks", f"/v2/requests/{job_id}/webhooks")
    cancelled = api.call("POST", "/v2/requests/{job_id}/cancel", f"/v2/requests/{job_id}/cancel")
    assert cancelled.json()["cancelled"] is (state in ("QUEUED", "PROCESSING"))


def test_submit_answers_are_documented(api: Api) -> None:
    replayed = {"Idempotency-Key": "once", **api.admin}
    first = api.call("POST", "/v2/{model}", "/v2/erase", json=job_body(), headers=replayed)
    again = api.call("POST", "/v2/{model}", "/v2/erase", json=job_body(), headers=replayed)
    assert again.json() == {**first.json(), "idempotent_replay": True}
    conflict = api.call("POST", "/v2/{model}", "/v2/erase", json=job_body(prompt="other"), headers=replayed)
    assert conflict.status_code == 409
    timed_out = api.call("POST", "/v1/{model}", "/v1/erase", json=job_body())
    assert timed_out.status_code == 504 and timed_out.json()["request_id"]
    processing = api.call("POST", "/api/v6/image_editing/inpaint", json={**modelslab_body(), "instant_response": "yes"})
    assert processing.json()["status"] == "processing"
    refused = api.call("POST", "/api/v6/image_editing/inpaint", json={**modelslab_body(), "samples": 9})
    assert refused.status_code == 400 and refused.json()["status"] == "error"
    assert api.call("POST", "/v2/{model}", "/v2/erase", json=job_body(), headers={}).status_code == 401
    assert api.call("POST", "/v2/{model}", "/v2/no-such-model", json=job_body()).status_code == 404


def modelslab_body() -> dict[str, Any]:
    body = job_body()
    return {"model_id": "erase", "prompt": body["prompt"], "init_image": body["image"], "mask_image": body["mask"]}


def test_batch_answers_are_documented(api: Api) -> None:
    items = [{"model": "erase", **job_body()}, {"model": "erase", **job_body(samples=9)}, {}]
    headers = {"Idempotency-Key": "batch-1", **api.admin}
    answer = api.call("POST", "/v2/batch", json={"requests": items}, headers=headers).json()
    assert (answer["accepted"], answer["rejected"]) == (1, 2)
    replay = api.call("POST", "/v2/batch", json={"requests": items}, headers=headers).json()
    assert replay["idempotent_replay"] is True and replay["batch_id"] == answer["batch_id"]
    summary = api.call("GET", "/v2/batch/{batch_id}", f"/v2/batch/{answer['batch_id']}").json()
    assert summary["counts"] == {"QUEUED": 1, "REJECTED": 2}


def test_the_other_native_answers_are_documented(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/v2/models", "/v2/schedulers", "/metrics"):
        api.call("GET", path)
    rotated = api.call("POST", "/v2/webhook-secret/rotate")
    assert rotated.json()["webhook_secret"]
    job_id = api.submit()
    redelivery = api.call(
        "POST", "/v2/requests/{job_id}/webhooks/redeliver", f"/v2/requests/{job_id}/webhooks/redeliver"
    )
    assert redelivery.status_code == 409
    assert api.call("GET", STATUS_ROUTE, "/v2/requests/nope/status").status_code == 404
    assert api.call("GET", "/v2/requests", params={"limit": 0}).status_code == 400
