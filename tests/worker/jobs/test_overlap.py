"""The worker's overlap (worker.jobs.overlap), in-process on the tiny SD 1.5 pipeline: a job's results
are stored on a side thread while the next job runs, and the next jobs' inputs are read while
the current one runs. Neither may change a result, lose a job or leave one stuck."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from storage.database.engine import session_scope
from storage.database.jobs import fail_job
from storage.database.models import JobStatus
from storage.errors import Unavailable
from tests.support.rig import Rig, tiny_rig
from tests.support.waiting import wait_until
from worker.jobs.overlap import Finisher
from worker.jobs.runner import run_job

BODY = {"prompt": "a red door", "seed": 5}


class WatchedBlobs:
    """The rig's blob store, counting reads per key; writes can be held back or made to fail."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: Counter[str] = Counter()
        self.writes_allowed = threading.Event()
        self.writes_allowed.set()
        self.writes_fail = False

    def get(self, key: str) -> bytes:
        self.reads[key] += 1
        return self.inner.get(key)

    def put(self, key: str, data: bytes, content_type: str = "image/png") -> None:
        if "/output/" in key:  # results, not a test's own inputs
            assert self.writes_allowed.wait(30)
            if self.writes_fail:
                raise Unavailable("object storage is unreachable")
        self.inner.put(key, data, content_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def rig(tmp_path, tiny_model_dir) -> Rig:
    with tiny_rig(tmp_path, tiny_model_dir, heartbeat_interval_seconds=0.1, storage_retry_seconds=0) as rig:
        rig.ctx.blobs = WatchedBlobs(rig.ctx.blobs)
        rig.finished: list[dict[str, str]] = []
        rig.ctx.overlap(rig.finished.append)
        yield rig


def heartbeat_threads(job_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"heartbeat-{job_id[:8]}"]


def test_a_job_is_stored_after_its_run_returns_and_beats_until_it_is(rig: Rig) -> None:
    rig.ctx.blobs.writes_allowed.clear()
    job_id = rig.submit(BODY)
    assert run_job(rig.ctx, job_id) == {}, "the run hands the storing off and returns"
    first_beat = rig.job(job_id).heartbeat_at
    assert rig.job(job_id).status == JobStatus.PROCESSING.value
    wait_until(lambda: rig.job(job_id).heartbeat_at > first_beat, timeout=10, what="a heartbeat while storing")

    rig.ctx.blobs.writes_allowed.set()
    assert rig.ctx.finisher.drain(timeout=30)
    assert rig.finished == [{job_id: "COMPLETED"}]
    assert len(rig.pixels(job_id)) == 1
    assert not heartbeat_threads(job_id), "the heartbeat outlived the job"


def test_a_failed_upload_fails_the_job_on_the_finisher(rig: Rig) -> None:
    rig.ctx.blobs.writes_fail = True
    job_id = rig.submit(BODY)
    assert run_job(rig.ctx, job_id) == {}
    assert rig.ctx.finisher.drain(timeout=30)
    job = rig.job(job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED.value, "storage_unavailable")
    assert rig.finished == [{job_id: "FAILED"}]
    assert not heartbeat_threads(job_id)


def test_the_next_jobs_inputs_are_read_while_a_job_runs(rig: Rig) -> None:
    first, second = rig.submit(BODY), rig.submit({**BODY, "seed": 6})
    second_keys = rig.job(second).input_keys
    run_job(rig.ctx, first)
    wait_until(
        lambda: all(rig.ctx.blobs.reads[key] == 1 for key in second_keys.values()),
        timeout=10,
        what="the second job's inputs read ahead",
    )
    run_job(rig.ctx, second)
    assert rig.ctx.finisher.drain(timeout=30)
    assert all(rig.ctx.blobs.reads[key] == 1 for key in second_keys.values()), (
        "the second job read its inputs again instead of taking the ones read ahead"
    )

    again = rig.submit({**BODY, "seed": 6})  # the same job, run without any overlap
    plain = dataclasses.replace(rig.ctx, finisher=None, prefetcher=None)
    assert run_job(plain, again) == {again: "COMPLETED"}
    (a,), (b,) = rig.pixels(second), rig.pixels(again)
    assert np.array_equal(a, b), "reading ahead changed the result"


def test_inputs_read_ahead_for_a_job_that_stopped_waiting_are_dropped(rig: Rig) -> None:
    prefetcher = rig.ctx.prefetcher
    first, second = rig.submit(BODY), rig.submit(BODY)
    keys = {job_id: rig.job(job_id).input_keys for job_id in (first, second)}
    prefetcher.ahead_of("inpaint")  # capacity 1 (no batching): only the oldest is read
    wait_until(lambda: rig.ctx.blobs.reads[keys[first]["image"]] == 1, timeout=10, what="the read-ahead")
    with session_scope(rig.ctx.sessions) as session:
        fail_job(session, first, code="cancelled", message="cancelled", now=datetime.now(UTC), ttl=timedelta(hours=1))
    prefetcher.ahead_of("inpaint")
    wait_until(lambda: rig.ctx.blobs.reads[keys[second]["image"]] == 1, timeout=10, what="the next read-ahead")
    assert prefetcher.take(first, keys[first]) is None, "a cancelled job's inputs were kept"
    assert prefetcher.take(second, {"image": "other", "mask": "keys"}) is None, "inputs of other keys were used"


def test_the_finisher_survives_a_crash_reports_outcomes_and_bounds_its_queue() -> None:
    reports: list[dict[str, str]] = []
    finisher = Finisher(reports.append, depth=1)
    release = threading.Event()

    def crash() -> str:
        raise RuntimeError("boom")

    finisher.hand_off("a", crash)
    finisher.hand_off("b", lambda: None)  # a job that recorded nothing is not reported
    finisher.hand_off("c", lambda: release.wait(10) and "COMPLETED")
    finisher.hand_off("d", lambda: "FAILED")  # waits while "c" runs: the queue holds 1
    third = threading.Thread(target=finisher.hand_off, args=("e", lambda: "COMPLETED"), daemon=True)
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a hand-off beyond the queue's depth did not wait"
    assert not finisher.drain(timeout=0.1)
    release.set()
    third.join(10)  # drain waits for what was handed off, and "e" is handed off once "d" leaves the queue
    assert finisher.drain(timeout=10)
    assert reports == [{"c": "COMPLETED"}, {"d": "FAILED"}, {"e": "COMPLETED"}]
