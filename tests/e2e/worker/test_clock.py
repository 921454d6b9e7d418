"""One clock: an inference worker whose process clock is a minute off still runs its jobs normally.

Leases, heartbeats and deadlines are stamped and compared on the database's clock
(storage.database.clock), so a worker's own clock does not matter. The worker here runs under
libfaketime (Debian's `faketime` package), its wall clock shifted by a minute either way; the
API, the sweeper and PostgreSQL keep the real time. Production topology only: on SQLite every
process shares one machine's clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.worker.test_durability import FAST_CLOCKS, register_tiny_slow
from tests.support.db import job_row
from tests.support.images import job_body
from tests.support.services import MotoServer, PostgresServer, RedisServer
from tests.support.stack import Stack, stack_env

LIBFAKETIME = next(
    (
        path
        for path in (
            Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
            Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
            Path("/usr/lib/faketime/libfaketime.so.1"),
        )
        if path.exists()
    ),
    None,
)
pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        LIBFAKETIME is None, reason="libfaketime is not installed (apt-get install faketime): no skewed worker clock"
    ),
]
STEPS = 300
"""Steps of the slow job: it runs well past the 10 s heartbeat timeout (FAST_CLOCKS), so the sweeper
compares its heartbeat many times while it runs."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("clock")
    servers = {"redis": RedisServer().start(), "moto": MotoServer().start(), "postgres": PostgresServer().start()}
    services = {
        "INPAINT_TEST_REDIS_URL": servers["redis"].url,
        "INPAINT_TEST_S3_ENDPOINT": servers["moto"].url,
        "INPAINT_TEST_POSTGRES_URL": servers["postgres"].url(),
    }
    env = {**stack_env("production", workdir, services), **FAST_CLOCKS, "INPAINT_SUBMIT_UNSERVABLE": "accept"}
    stack = Stack(name="clock", workdir=workdir, env=env)
    stack.cli("inpaint-admin", "migrate")
    register_tiny_slow(stack, tiny_model_dir)
    stack.start_all()
    try:
        yield stack
    finally:
        stack.stop_all()
        for server in servers.values():
            server.stop()


def start_skewed_worker(stack: Stack, offset: str) -> None:
    """The inference worker again, its wall clock `offset` off (monotonic time stays true)."""
    stack.stop("worker")
    stack.start(
        "worker",
        "inpaint-worker",
        "run",
        "--queues",
        "inpaint",
        env={
            "INPAINT_WORKER_METRICS_PORT": str(stack.worker_metrics_port),
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME": offset,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )


def workers(stack: Stack) -> list[dict[str, Any]]:
    answer = httpx.post(f"{stack.base_url}/api/v1/enterprise/system_details", json={"key": stack.admin_key}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["workers"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("offset", ["-60s", "+60s"])
def test_a_worker_whose_clock_is_a_minute_off_completes_its_jobs_normally(stack: Stack, offset: str) -> None:
    start_skewed_worker(stack, offset)
    try:
        job_id = stack.submit("tiny-slow", job_body(num_inference_steps=STEPS, seed=7))
        final = stack.wait(job_id, timeout=300)
        row = job_row(stack, job_id)
        assert final["status"] == "COMPLETED", (final.get("error_code"), final.get("error"))
        assert row.attempts == 1, f"a healthy worker's job took {row.attempts} attempts"
        assert row.started_at is not None and row.finished_at is not None
        queue_time = (row.started_at - row.created_at).total_seconds()
        assert 0 <= queue_time < 30, f"queue time {queue_time:.1f} s"
        assert row.finished_at >= row.started_at
        assert (row.finished_at - row.started_at).total_seconds() < 300
        deadline = time.monotonic() + 10
        while not (online := [w for w in workers(stack) if w["online"] and "inpaint" in (w["queues"] or [])]):
            assert time.monotonic() < deadline, f"the worker does not show online: {workers(stack)}"
            time.sleep(0.5)
        assert len(online) == 1
    finally:
        stack.stop("worker")
        stack.start_worker()
