"""GET /metrics and the workers' metrics ports, scraped from running stacks and parsed as Prometheus does."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.stats import add_counts, read_counts
from tests.support.images import job_body
from tests.support.stack import Stack, unique_name
from tests.test_access import in_process_app

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(stack: Stack) -> Samples:
    response = httpx.get(f"{stack.base_url}/metrics", headers={"x-api-key": stack.admin_key}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def scrape_worker(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    return parse(response.text)


def test_job_counters_by_model_and_error_code(stack: Stack, tmp_path) -> None:
    missing = unique_name("obs-missing-")
    stack.cli(
        "inpaint-admin",
        "models",
        "register",
        missing,
        str(tmp_path / "none"),
        "--family",
        "sd15",
        "--max-side",
        "128",
        "--default-size",
        "64",
        "--steps",
        "1:50:2",
    )
    before = scrape(stack)
    done = [stack.submit("erase", job_body(track_id=f"ok-{i}")) for i in range(2)]
    failed = stack.submit(missing, job_body(num_inference_steps=2))
    assert [stack.wait(job_id)["status"] for job_id in done] == ["COMPLETED", "COMPLETED"]
    assert stack.wait(failed)["status"] == "FAILED"
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("inpaint_jobs_submitted_total", model="erase") == 2
    assert delta("inpaint_jobs_completed_total", model="erase") == 2
    assert delta("inpaint_jobs_failed_total", model="erase", error_code="model_unavailable") == 0
    assert value(after, "inpaint_jobs_submitted_total", model=missing) == 1
    assert value(after, "inpaint_jobs_completed_total", model=missing) == 0
    assert value(after, "inpaint_jobs_failed_total", model=missing, error_code="model_unavailable") == 1
    assert value(after, "inpaint_jobs", model=missing, status="FAILED") == 1
    assert value(after, "inpaint_jobs", model=missing, status="QUEUED") == 0
    # The two erase jobs finished inside the window: the histograms hold them.
    assert delta("inpaint_job_inference_seconds_bucket", model="erase", le="+Inf") == 2
    assert delta("inpaint_job_total_seconds_gcount", model="erase") == 2
    assert value(after, "inpaint_job_inference_seconds_bucket", model=missing, le="+Inf") == 0
    assert value(after, "inpaint_job_total_seconds_bucket", model=missing, le="+Inf") == 1
    for action in ("requeued", "republished", "timed_out", "gave_up"):
        assert ("inpaint_sweeper_actions_total", (("action", action),)) in after
    assert value(after, "inpaint_broker_up") == 1


def test_queue_depth_counts_waiting_messages_while_the_worker_is_stopped(stack: Stack) -> None:
    stack.stop("worker")
    try:
        idle = scrape(stack)
        assert value(idle, "inpaint_queue_depth", queue="inpaint") == 0
        jobs = [stack.submit("erase", job_body()) for _ in range(3)]
        waiting = scrape(stack)
        assert value(waiting, "inpaint_queue_depth", queue="inpaint") == 3
        assert value(waiting, "inpaint_queue_waiting_jobs", queue="inpaint") == 3
        assert ("inpaint_queue_depth", (("queue", "webhooks"),)) in waiting
    finally:
        stack.start_worker()
    assert all(stack.wait(job_id)["status"] == "COMPLETED" for job_id in jobs)
    assert value(scrape(stack), "inpaint_queue_depth", queue="inpaint") == 0


def test_worker_port_serves_resident_models_and_jobs_run(stack: Stack) -> None:
    assert stack.wait(stack.submit("erase", job_body()))["status"] == "COMPLETED"
    worker = scrape_worker(stack.worker_metrics_port)
    resident = [
        v
        for (name, labels), v in worker.items()
        if name == "inpaint_worker_resident_models" and dict(labels)["kind"] == "erase"
    ]
    assert resident == [1.0], resident
    assert value(worker, "inpaint_worker_jobs_total", model="erase", status="COMPLETED") >= 1
    assert value(worker, "inpaint_worker_inference_seconds_count", model="erase") >= 1
    ops = scrape_worker(stack.ops_metrics_port)
    assert not any(name == "inpaint_worker_resident_models" for name, _ in ops), "the ops worker loads no model"


def test_metrics_need_an_admin_key_or_the_metrics_token(stack: Stack) -> None:
    url = f"{stack.base_url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"x-api-key": stack.user_key}).status_code == 403
    assert httpx.get(url, headers={"authorization": "Bearer not-the-token"}).status_code == 401


def test_the_metrics_token_opens_metrics_only(tmp_path) -> None:
    client, keys = in_process_app(tmp_path, metrics_token="scrape-token-0123456789")
    with client:
        bearer = {"authorization": "Bearer scrape-token-0123456789"}
        response = client.get("/metrics", headers=bearer)
        assert response.status_code == 200, response.text
        assert "inpaint_jobs_submitted_total" in response.text or "inpaint_jobs_submitted" in response.text
        assert client.get("/v2/requests", headers=bearer).status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"x-api-key": keys["admin"]}).status_code == 200


def test_an_empty_metrics_token_opens_nothing(tmp_path) -> None:
    client, _ = in_process_app(tmp_path, metrics_token="")
    with client:
        assert client.get("/metrics", headers={"authorization": "Bearer "}).status_code == 401


def test_counters_add_up_across_sessions(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    sessions = make_session_factory(engine)
    name = unique_name("test_")
    for n in (2, 3):
        with session_scope(sessions) as session:
            add_counts(session, {name: n, "unused": 0})
    with session_scope(sessions) as session:
        counts = read_counts(session)
    engine.dispose()
    assert counts[name] == 5 and "unused" not in counts


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_log_lines_about_a_job_carry_request_id_and_track_id(stack: Stack) -> None:
    track = unique_name("track-")
    job_id = stack.submit("erase", job_body(track_id=track))
    assert stack.wait(job_id)["status"] == "COMPLETED"
    for process, must_say in (("api", "job accepted"), ("worker", "job completed")):
        lines = [line for line in json_lines(stack.log(process)) if line.get("request_id") == job_id]
        assert lines, f"no JSON line about {job_id} in the {process} log"
        assert all(line.get("track_id") == track for line in lines), lines
        assert any(must_say in line["message"] for line in lines), lines
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


@pytest.mark.parametrize("broken", ["broker", "storage"])
def test_readyz_names_what_is_unreachable(tmp_path, broken: str) -> None:
    settings: dict[str, Any] = {  # port 9 (discard) has no listener on loopback
        "broker": {"broker_url": "redis://127.0.0.1:9/0"},
        "storage": {
            "storage_backend": "s3",
            "s3_endpoint_url": "http://127.0.0.1:9",
            "s3_access_key_id": "x",
            "s3_secret_access_key": "y",
        },
    }[broken]
    client, _ = in_process_app(tmp_path, **settings)
    with client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks[broken].startswith("unreachable"), checks
    assert {name for name, state in checks.items() if state == "ok"} == {"database", "broker", "storage"} - {broken}
