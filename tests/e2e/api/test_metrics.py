"""GET /metrics and the workers' metrics ports, scraped from running stacks and parsed as Prometheus does.

In process: the metrics token (tests/api/test_metrics_route.py), /readyz (tests/api/test_health.py)
and the counters' storage (tests/storage/database/test_stats.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.images import job_body
from tests.support.stack import Stack, unique_name

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
    stack.register_missing_model(missing, tmp_path)
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
    with stack.worker_stopped():
        idle = scrape(stack)
        assert value(idle, "inpaint_queue_depth", queue="inpaint") == 0
        jobs = [stack.submit("erase", job_body()) for _ in range(3)]
        waiting = scrape(stack)
        assert value(waiting, "inpaint_queue_depth", queue="inpaint") == 3
        assert value(waiting, "inpaint_queue_waiting_jobs", queue="inpaint") == 3
        assert ("inpaint_queue_depth", (("queue", "webhooks"),)) in waiting
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
