"""Faults, injected for real: killed workers, restarted brokers, storage and database outages.

Each topology gets a private stack with its own Redis, PostgreSQL and S3 server, so
they can be stopped and started, and with fast clocks: heartbeats every 0.5 s, a
worker presumed lost after 10 s, the sweeper every second, 3 attempts, 8 s of storage
retries, and the tiny model loaded at worker start.
INPAINT_CHAOS_ROUNDS sets how many kills (default 3; `./scripts/test -m chaos` with a
larger value for long runs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.db import job_row, reconcile, stack_settings
from tests.support.images import job_body
from tests.support.services import MotoServer, PostgresServer, RedisServer, s3_client
from tests.support.stack import Stack, stack_env
from tests.support.waiting import wait_until

ROUNDS = int(os.environ.get("INPAINT_CHAOS_ROUNDS", "3"))
FAST_CLOCKS = {
    "INPAINT_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "INPAINT_HEARTBEAT_TIMEOUT_SECONDS": "10",
    "INPAINT_SWEEP_INTERVAL_SECONDS": "1",
    "INPAINT_MAX_ATTEMPTS": "3",
    "INPAINT_JOB_TIME_LIMIT_SECONDS": "600",
    "INPAINT_STORAGE_RETRY_SECONDS": "8",
    "INPAINT_WARMUP_MODELS": "tiny-slow",
}
pytestmark = pytest.mark.timeout(900)


class ChaosStack(Stack):
    redis: RedisServer | None = None
    moto: MotoServer | None = None
    postgres: PostgresServer | None = None
    bucket: str = ""


def register_tiny_slow(stack: Stack, model_dir: Path) -> None:
    """Register "tiny-slow": the tiny SD 1.5 model with up to 500 steps, for jobs that run long enough
    to be killed, timed out or heartbeat-checked mid-run."""
    limits = ("--max-side", "128", "--default-size", "64", "--steps", "1:500:2")
    stack.cli("inpaint-admin", "models", "register", "tiny-slow", str(model_dir), "--family", "sd15", *limits)


@pytest.fixture(scope="module", params=["embedded", "production"])
def chaos(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[ChaosStack]:
    workdir = tmp_path_factory.mktemp(f"chaos-{request.param}")
    private: dict[str, Any] = {}
    if request.param == "production":
        private = {"redis": RedisServer().start(), "moto": MotoServer().start(), "postgres": PostgresServer().start()}
        services = {
            "INPAINT_TEST_REDIS_URL": private["redis"].url,
            "INPAINT_TEST_S3_ENDPOINT": private["moto"].url,
            "INPAINT_TEST_POSTGRES_URL": private["postgres"].url(),
        }
    else:
        services = {}
    env = {**stack_env(request.param, workdir, services), **FAST_CLOCKS}
    # Jobs are queued while no worker runs (workers killed, restarted): the mode of a deployment that
    # scales its workers from zero. With the default, such submits are refused (api.serving).
    env["INPAINT_SUBMIT_UNSERVABLE"] = "accept"
    # Supervised, as compose's restart policy supervises a deployment: a process that exits on its own
    # (a worker ending itself after Celery's unrecoverable error) is started again.
    stack = ChaosStack(name=f"chaos-{request.param}", workdir=workdir, env=env, supervised=True)
    for name, server in private.items():
        setattr(stack, name, server)
    stack.bucket = env.get("INPAINT_S3_BUCKET", "")
    stack.cli("inpaint-admin", "migrate")
    register_tiny_slow(stack, tiny_model_dir)
    stack.start_all()
    yield stack
    try:  # the whole jobs table, after every test of the module: nothing stuck, lost, untold or doubled
        counted = wait_until(
            lambda: (r := reconcile(stack, stack.told)).stuck == [] and r, what="every job ended", interval=1
        )
        assert counted.clean, counted
    finally:
        stack.stop_all()
        for server in private.values():
            server.stop()


def status(stack: Stack, job_id: str) -> dict[str, Any]:
    with stack.client() as client:
        return client.get(f"/v2/requests/{job_id}/status").json()  # type: ignore[no-any-return]


def running(stack: Stack, job_ids: list[str], killed: set[tuple[str, int]] | None = None) -> tuple[str, int] | None:
    """(job id, attempt) of a job that is PROCESSING and past its first step, if any.

    Attempts in `killed` do not count: a killed attempt stays PROCESSING, with its last
    step, until the sweeper gives the job up for lost.
    """
    for job_id in job_ids:
        row = job_row(stack, job_id)
        mid_run = row.status == "PROCESSING" and row.progress_step > 0
        if mid_run and (job_id, row.attempts) not in (killed or set()):
            return job_id, row.attempts
    return None


def kill_mid_run(chaos: ChaosStack, job_ids: list[str], killed: set[tuple[str, int]]) -> str:
    """SIGKILL the worker while an attempt not killed before is mid-run, and start a new one."""
    victim = wait_until(lambda: running(chaos, job_ids, killed), what="a new attempt mid-run")
    chaos.stop("worker", sig=signal.SIGKILL)
    killed.add(victim)
    chaos.start_worker()
    return victim[0]


def test_sigkill_the_worker_repeatedly_loses_nothing(chaos: ChaosStack) -> None:
    ids = [chaos.submit("tiny-slow", job_body(num_inference_steps=40, seed=i)) for i in range(ROUNDS + 3)]
    killed: set[tuple[str, int]] = set()
    for _ in range(ROUNDS):
        kill_mid_run(chaos, ids, killed)
    finals = [chaos.wait(job_id, timeout=400) for job_id in ids]
    assert all(f["status"] == "COMPLETED" for f in finals), [(f["status"], f.get("error")) for f in finals]
    for job_id, attempt in killed:
        assert job_row(chaos, job_id).attempts > attempt, "a killed job was not run again"
    counted = reconcile(chaos, chaos.told)  # from the database: every row, not only the ids we hold
    print(f"kill loop, {ROUNDS} kills, {len(ids)} jobs: {counted}")
    assert counted.clean, counted


def test_a_job_whose_worker_keeps_dying_fails_saying_so(chaos: ChaosStack) -> None:
    job_id = chaos.submit("tiny-slow", job_body(num_inference_steps=400))
    killed: set[tuple[str, int]] = set()
    for _ in range(3):
        kill_mid_run(chaos, [job_id], killed)
    final = chaos.wait(job_id)
    assert final["status"] == "FAILED" and final["error_code"] == "worker_lost"
    assert "stopped responding 3 times" in final["error"]


def test_a_job_over_its_time_limit_fails_and_the_worker_moves_on(chaos: ChaosStack) -> None:
    chaos.stop("ops")  # the sweeper runs there: give it a 20 s limit for this test
    chaos.env["INPAINT_JOB_TIME_LIMIT_SECONDS"] = "20"
    chaos.start_ops()
    try:
        slow = chaos.submit("tiny-slow", job_body(num_inference_steps=500, img_width=128, img_height=128))
        after = chaos.submit("erase", job_body())
        final = chaos.wait(slow, timeout=300)
        assert final["status"] == "FAILED" and final["error_code"] == "timeout"
        assert "limit of 20 s" in final["error"]
        assert chaos.wait(after)["status"] == "COMPLETED", "the worker did not stop the timed-out job"
    finally:
        chaos.stop("ops")
        chaos.env["INPAINT_JOB_TIME_LIMIT_SECONDS"] = FAST_CLOCKS["INPAINT_JOB_TIME_LIMIT_SECONDS"]
        chaos.start_ops()


def test_sigterm_gives_the_running_job_back(chaos: ChaosStack) -> None:
    job_id = chaos.submit("tiny-slow", job_body(num_inference_steps=60))
    wait_until(lambda: running(chaos, [job_id]), what="the job mid-run")
    proc = chaos.procs["worker"]
    chaos.stop("worker", sig=signal.SIGTERM, timeout=30)
    assert proc.returncode is not None, "the worker did not exit on SIGTERM"
    assert status(chaos, job_id)["status"] == "QUEUED", "the job was left PROCESSING"
    chaos.start_worker()
    assert chaos.wait(job_id)["status"] == "COMPLETED"
    assert job_row(chaos, job_id).attempts == 1, "a graceful give-back counted as a lost attempt"


# The faults below exist only in the production topology (the embedded broker, database
# and image store are local files), so those tests run on the production stack alone.
production_only = pytest.mark.parametrize("chaos", ["production"], indirect=True)


@production_only
def test_broker_unreachable_at_submit_the_sweeper_publishes_later(chaos: ChaosStack) -> None:
    redis = chaos.redis
    redis.stop()
    try:
        with chaos.client() as client:
            response = client.post("/v2/erase", json=job_body())
        assert response.status_code == 200, response.text
        job_id = response.json()["request_id"]
        chaos.told.add(job_id)
        assert job_row(chaos, job_id).published_at is None
    finally:
        redis.start()
    assert chaos.wait(job_id, timeout=120)["status"] == "COMPLETED"


@production_only
@pytest.mark.parametrize("how", ["restart", "wipe"])
def test_redis_restart_with_jobs_queued_loses_none(chaos: ChaosStack, how: str) -> None:
    redis = chaos.redis
    chaos.stop("worker")
    ids = [chaos.submit("erase", job_body()) for _ in range(10)]
    time.sleep(1.5)  # appendfsync everysec
    if how == "restart":
        redis.stop(signal.SIGKILL)
        redis.start()
    else:  # total loss of the broker's data: the sweeper's queue-depth check republishes
        import redis as redis_client

        redis_client.Redis.from_url(redis.url).flushall()
    chaos.start_worker()
    finals = [chaos.wait(job_id, timeout=180) for job_id in ids]
    assert [f["status"] for f in finals] == ["COMPLETED"] * 10


@production_only
def test_s3_briefly_down_during_upload_is_retried(chaos: ChaosStack) -> None:
    moto = chaos.moto
    job_id = chaos.submit("tiny-slow", job_body(num_inference_steps=30))
    wait_until(lambda: running(chaos, [job_id]), what="the job mid-run (inputs read)")
    moto.stop()
    time.sleep(3)
    moto.start()
    s3_client(moto.url).create_bucket(Bucket=chaos.bucket)  # moto keeps nothing across restarts
    assert chaos.wait(job_id)["status"] == "COMPLETED"
    with chaos.client() as client:
        url = client.get(f"/v2/requests/{job_id}").json()["output"][0]
    assert httpx.get(url).status_code == 200, "COMPLETED but the image is missing"


@production_only
def test_s3_down_for_good_fails_the_job_with_a_reason(chaos: ChaosStack) -> None:
    moto = chaos.moto
    job_id = chaos.submit("tiny-slow", job_body(num_inference_steps=30))
    wait_until(lambda: running(chaos, [job_id]), what="the job mid-run (inputs read)")
    moto.stop()
    try:
        final = chaos.wait(job_id, timeout=120)
    finally:
        moto.start()
        s3_client(moto.url).create_bucket(Bucket=chaos.bucket)
    assert final["status"] == "FAILED" and final["error_code"] == "storage_unavailable"
    assert "unavailable for 8 s" in final["error"]


@production_only
def test_database_down_at_submit_is_503_and_writes_nothing(chaos: ChaosStack) -> None:
    postgres = chaos.postgres
    objects_before = s3_client(chaos.moto.url).list_objects_v2(Bucket=chaos.bucket).get("KeyCount", 0)
    postgres.stop()
    try:
        with chaos.client() as client:
            response = client.post("/v2/erase", json=job_body())
    finally:
        postgres.start()
    assert response.status_code == 503
    assert "database is unavailable" in response.json()["error"]
    assert s3_client(chaos.moto.url).list_objects_v2(Bucket=chaos.bucket).get("KeyCount", 0) == objects_before
    job_id = wait_until(lambda: _submit_ok(chaos), timeout=60, what="submits to work again")
    assert chaos.wait(job_id)["status"] == "COMPLETED"


def _submit_ok(stack: Stack) -> str | None:
    with stack.client() as client:
        response = client.post("/v2/erase", json=job_body())
    if response.status_code != 200:
        return None
    stack.told.add(response.json()["request_id"])
    return str(response.json()["request_id"])


@pytest.mark.chaos
def test_long_kill_loop(chaos: ChaosStack) -> None:
    """The same as the first test with many more rounds: INPAINT_CHAOS_ROUNDS=20 ./scripts/test -m chaos."""
    test_sigkill_the_worker_repeatedly_loses_nothing(chaos)


def push_raw_message(chaos: ChaosStack, payload: str) -> None:
    """Put `payload` on the inpaint queue as it is, bypassing kombu: Redis's list, or the SQLite broker's table."""
    url = stack_settings(chaos).resolved_broker_url
    if url.startswith("redis://"):
        import redis as redis_client

        redis_client.Redis.from_url(url).lpush("inpaint", payload)
        return
    with contextlib.closing(sqlite3.connect(url.split("sqlite:///", 1)[1], timeout=10)) as db, db:
        (queue_id,) = db.execute("SELECT id FROM kombu_queue WHERE name = 'inpaint'").fetchone()
        db.execute(
            "INSERT INTO kombu_message (queue_id, visible, payload, version) VALUES (?, 1, ?, 1)", (queue_id, payload)
        )


def test_messages_the_worker_cannot_decode_are_dropped_and_counted(chaos: ChaosStack) -> None:
    """Poison on the broker (not JSON, JSON that is no task message): each is dropped and counted in the
    worker's /metrics, the worker lives on (same process, no restart) and the next job completes."""
    chaos.wait_ready(model="erase")
    worker, restarts = chaos.procs["worker"].pid, list(chaos.restarts)
    poison = ("not json", "{}", "[1, 2]", '{"body": "eA==", "properties": {}}')
    for payload in poison:
        push_raw_message(chaos, payload)
    assert chaos.wait(chaos.submit("erase", job_body()), timeout=120)["status"] == "COMPLETED"
    assert chaos.procs["worker"].pid == worker and chaos.restarts == restarts, "the worker died"
    metrics = httpx.get(f"http://127.0.0.1:{chaos.worker_metrics_port}/metrics", timeout=10).text
    assert f"inpaint_worker_broker_messages_dropped_total {float(len(poison))}" in metrics, metrics[-2000:]
