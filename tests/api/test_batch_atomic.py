"""Batches are atomic, in process on the embedded default: every item is checked before anything is
stored, so a batch answers 200 with each bad item refused on its own line, or an error with nothing
queued, stored or charged; and a batch retried with its Idempotency-Key is not queued twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

import api.routes.batch as batch_route
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.models import ApiKey, Batch, Job
from tests.support.app import in_process_app
from tests.support.images import job_body


class Published:
    def __init__(self) -> None:
        self.job_ids: list[str] = []

    def __call__(self, context: Any, job_id: str, queue: str) -> None:
        self.job_ids.append(job_id)


@pytest.fixture
def app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str], Path, Published]]:
    published = Published()
    monkeypatch.setattr(batch_route, "publish_or_defer", published)
    client, keys = in_process_app(tmp_path)
    with client:
        yield client, keys, tmp_path, published


def counts(tmp_path: Path) -> dict[str, int]:
    engine = make_engine(f"sqlite:///{tmp_path / 'inpaint.db'}")
    try:
        with session_scope(make_session_factory(engine)) as session:
            return {
                "jobs": int(session.execute(select(func.count()).select_from(Job)).scalar_one()),
                "batches": int(session.execute(select(func.count()).select_from(Batch)).scalar_one()),
            }
    finally:
        engine.dispose()


def stored_inputs(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and "input" in p.parts]


def item(**fields: Any) -> dict[str, Any]:
    return {"model": "erase", **job_body(), **fields}


def test_bad_items_are_refused_alone_and_the_rest_queued(
    app: tuple[TestClient, dict[str, str], Path, Published],
) -> None:
    client, keys, tmp_path, published = app
    requests = [item(), item(samples=99), {"prompt": "no model"}, item(model="no-such-model"), item()]
    answer = client.post("/v2/batch", json={"requests": requests}, headers={"x-api-key": keys["user"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    statuses = [entry.get("http_status") for entry in body["items"]]
    assert statuses == [None, 400, 400, 404, None]
    assert body["items"][1]["error"].startswith("samples")
    accepted = [entry["request_id"] for entry in body["items"] if "request_id" in entry]
    assert published.job_ids == accepted
    assert counts(tmp_path) == {"jobs": 2, "batches": 1}


def test_a_malformed_later_item_queues_nothing(app: tuple[TestClient, dict[str, str], Path, Published]) -> None:
    client, keys, tmp_path, published = app
    good = json.dumps(item())
    for poison in ('"\\ud800"', '"a\\u0000b"', "NaN"):
        raw = f'{{"requests": [{good}, {good}, {{"model": "erase", "prompt": {poison}}}]}}'.encode()
        answer = client.post("/v2/batch", content=raw, headers={"x-api-key": keys["user"]})
        assert answer.status_code == 400, (poison, answer.text)
        assert answer.json()["error"].startswith("requests.2.prompt") or "NaN" in answer.json()["error"]
    assert counts(tmp_path) == {"jobs": 0, "batches": 0}
    assert published.job_ids == []
    assert stored_inputs(tmp_path) == []


def test_a_database_failure_midway_leaves_nothing_queued_stored_or_charged(
    app: tuple[TestClient, dict[str, str], Path, Published], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, keys, tmp_path, published = app
    engine = make_engine(f"sqlite:///{tmp_path / 'inpaint.db'}")
    with session_scope(make_session_factory(engine)) as session:
        session.execute(update(ApiKey).values(credits=10))
    real_insert = batch_route.insert_job
    calls = {"n": 0}

    def failing_third(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OperationalError("INSERT", {}, Exception("connection lost"))
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(batch_route, "insert_job", failing_third)
    answer = client.post("/v2/batch", json={"requests": [item()] * 4}, headers={"x-api-key": keys["user"]})
    assert answer.status_code == 503, answer.text
    assert "nothing was stored" in answer.json()["error"]
    assert answer.headers["Retry-After"]
    assert counts(tmp_path) == {"jobs": 0, "batches": 0}
    assert published.job_ids == []
    assert stored_inputs(tmp_path) == []
    with session_scope(make_session_factory(engine)) as session:
        credits = {k.name: k.credits for k in session.execute(select(ApiKey)).scalars()}
    engine.dispose()
    assert credits["u"] == 10, credits


def test_credits_run_out_midway_and_only_that_item_is_refused(
    app: tuple[TestClient, dict[str, str], Path, Published],
) -> None:
    client, keys, tmp_path, published = app
    engine = make_engine(f"sqlite:///{tmp_path / 'inpaint.db'}")
    with session_scope(make_session_factory(engine)) as session:
        session.execute(update(ApiKey).where(ApiKey.name == "u").values(credits=2))
    engine.dispose()
    answer = client.post("/v2/batch", json={"requests": [item()] * 3}, headers={"x-api-key": keys["user"]})
    assert answer.status_code == 200, answer.text
    assert [entry.get("http_status") for entry in answer.json()["items"]] == [None, None, 406]
    assert counts(tmp_path)["jobs"] == 2
    assert len(stored_inputs(tmp_path)) == 2 * 2  # image and mask of the two recorded jobs; the third's are gone


def test_a_retried_batch_with_its_idempotency_key_is_not_queued_twice(
    app: tuple[TestClient, dict[str, str], Path, Published],
) -> None:
    client, keys, tmp_path, published = app
    headers = {"x-api-key": keys["user"], "Idempotency-Key": "batch-0001"}
    body = {"requests": [item(), item(prompt="another")]}
    first = client.post("/v2/batch", json=body, headers=headers)
    again = client.post("/v2/batch", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json()["batch_id"] == first.json()["batch_id"]
    assert again.json()["idempotent_replay"] is True
    assert counts(tmp_path) == {"jobs": 2, "batches": 1}
    assert len(published.job_ids) == 2
    other = client.post("/v2/batch", json={"requests": [item()]}, headers=headers)
    assert other.status_code == 409, other.text
