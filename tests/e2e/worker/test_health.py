"""`inpaint-worker health` against a running production stack (Redis broker, PostgreSQL): the
inference worker (solo pool, idle) and the ops worker (threads pool) answer Celery's ping by
name, beat's schedule is fresh, each check ends in well under 10 s, and a stopped ops worker is
reported unhealthy within the check's own deadline. The decisions themselves are
tests/worker/test_health.py."""

from __future__ import annotations

import subprocess
import time

from tests.support.stack import BIN, Stack

PROBE_SECONDS = 10.0
"""What a Docker or Kubernetes healthcheck allows one run."""


def health(stack: Stack, *argv: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "inpaint-worker"), "health", *argv],
        env=stack.process_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def healthy_soon(stack: Stack, *argv: str, timeout: float = 60) -> str:
    """Until the check passes (beat writes its schedule a moment after it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        rc, output, seconds = health(stack, *argv)
        if rc == 0:
            assert seconds < PROBE_SECONDS, output
            return output
        assert time.monotonic() < deadline, f"{argv}: {output}"
        time.sleep(0.5)


def test_running_workers_and_beat_are_healthy(production: Stack) -> None:
    assert "answered a ping" in healthy_soon(production, "--queues", "inpaint")
    assert "answered a ping" in healthy_soon(production, "--queues", "maintenance,webhooks")
    assert "schedule file" in healthy_soon(
        production, "--beat", "--schedule", str(production.workdir / "beat-schedule")
    )


def test_a_stopped_ops_worker_fails_its_check(production: Stack) -> None:
    healthy_soon(production, "--queues", "maintenance,webhooks")
    production.stop("ops")
    try:
        rc, output, seconds = health(production, "--queues", "maintenance,webhooks")
        assert rc == 1, output
        assert "did not answer a ping" in output and output.startswith("unhealthy:")
        assert seconds < PROBE_SECONDS, output
    finally:
        production.start_ops()
    healthy_soon(production, "--queues", "maintenance,webhooks")


def test_a_worker_of_another_name_is_not_mistaken_for_this_one(production: Stack) -> None:
    rc, output, _ = health(production, "--queues", "inpaint", "--name", "gpu7@%h")
    assert rc == 1 and "gpu7@" in output and "no row in the fleet table" in output, output
