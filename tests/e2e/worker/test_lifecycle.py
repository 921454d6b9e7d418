"""A job's life after submit: duplicate deliveries, expiry and the reaper, on both topologies."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx

from storage.blobs.store import LocalBlobStore, make_blob_store
from storage.broker import make_celery, publish_job
from storage.database.jobs import utcnow
from tests.conftest import TINY_SLUG
from tests.support.db import job_row, stack_settings, update_job
from tests.support.images import job_body
from tests.support.stack import Stack


def wait_for_log(stack: Stack, process: str, text: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.log_messages(process).count(text) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} appeared {stack.log_messages(process).count(text)} times, expected {count}")


def test_duplicate_deliveries_run_the_job_once(stack: Stack) -> None:
    job_id = stack.submit(TINY_SLUG, job_body(num_inference_steps=5))
    celery = make_celery(stack_settings(stack))
    publish_job(celery, job_id, queue="inpaint")  # two more messages for the same job
    publish_job(celery, job_id, queue="inpaint")
    status = stack.wait(job_id)
    assert status["status"] == "COMPLETED"
    finished = job_row(stack, job_id).finished_at
    wait_for_log(
        stack,
        "worker",
        f"nothing to do: the job is not QUEUED (duplicate delivery, finished or unknown) request_id={job_id}",
        2,
    )
    row = job_row(stack, job_id)
    assert row.attempts == 1, "the job was claimed more than once"
    assert row.finished_at == finished, "a duplicate delivery changed the finished job"
    assert stack.log_messages("worker").count("job completed in") >= 1
    assert stack.log_messages("worker").count(f"job started (attempt 1) request_id={job_id}") == 1
    assert f"job started (attempt 2) request_id={job_id}" not in stack.log_messages("worker")


def test_results_expire_after_the_ttl_and_the_reaper_deletes_them(stack: Stack) -> None:
    job_id = stack.submit("erase", job_body())
    assert stack.wait(job_id)["status"] == "COMPLETED"
    row = job_row(stack, job_id)
    assert row.expires_at is not None and row.finished_at is not None
    assert row.expires_at - row.finished_at == timedelta(seconds=3600), "default retention is one hour"
    with stack.client() as client:
        url = client.get(f"/v2/requests/{job_id}").json()["output"][0]
    assert httpx.get(url).status_code == 200

    update_job(stack, job_id, expires_at=utcnow() - timedelta(seconds=1))
    with stack.client() as client:
        assert client.get(f"/v2/requests/{job_id}/status").status_code == 404
        assert client.get(f"/v2/requests/{job_id}").status_code == 404

    blobs = make_blob_store(stack_settings(stack))
    deadline = time.monotonic() + 30
    while job_row(stack, job_id).expired_at is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_row(stack, job_id).expired_at is not None, "the periodic reaper did not run"
    assert blobs.delete_prefix(f"jobs/{job_id}/") == 0, "objects of an expired job are still stored"
    if isinstance(blobs, LocalBlobStore):
        assert httpx.get(url).status_code == 404, "a signed link still serves an expired image"
