"""`inpaint-worker health`'s decisions, with a fake ping and fleet table: the ping decides when it is
answered; an unanswered one falls back to a fresh, busy heartbeat for an inference worker only; beat
is judged by its schedule file's age. The real command against real processes is
tests/e2e/worker/test_health.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.settings import load_settings
from worker.health import (
    BEAT_SYNC_SECONDS,
    FleetBeat,
    Verdict,
    beat_stale_after,
    judge_beat,
    judge_worker,
    within_deadline,
    worker_name,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
OFFLINE_AFTER = timedelta(seconds=15)
NAME = "inpaint@gpu-1"


def judge(answered: bool | None, row: FleetBeat | None, *, inference: bool = True) -> Verdict:
    pinged: list[str] = []

    def ping(name: str) -> bool | None:
        pinged.append(name)
        return answered

    fleet = (lambda name: row if name == NAME else None) if inference else None
    verdict = judge_worker(NAME, ping=ping, fleet=fleet, now=NOW, offline_after=OFFLINE_AFTER)
    assert pinged == [NAME]
    return verdict


def beat(seconds_ago: float, *, busy: bool) -> FleetBeat:
    return FleetBeat(last_seen=NOW - timedelta(seconds=seconds_ago), busy=busy)


def test_an_answered_ping_is_healthy_whatever_the_fleet_says() -> None:
    assert judge(True, None).healthy
    assert judge(True, None, inference=False).healthy


def test_a_silent_inference_worker_running_a_job_is_healthy() -> None:
    verdict = judge(False, beat(4, busy=True))
    assert verdict.healthy and "running a job" in verdict.reason


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (None, "no row in the fleet table"),
        (beat(16, busy=True), "heartbeat is 16 s old (offline after 15 s)"),
        (beat(2, busy=False), "says it is idle"),
    ],
)
def test_a_silent_inference_worker_is_unhealthy_saying_why(row: FleetBeat | None, reason: str) -> None:
    verdict = judge(False, row)
    assert not verdict.healthy
    assert "did not answer a ping" in verdict.reason and reason in verdict.reason


def test_a_silent_ops_worker_is_unhealthy_and_has_no_fallback() -> None:
    verdict = judge(False, beat(1, busy=True), inference=False)
    assert not verdict.healthy and "did not answer a ping" in verdict.reason


def test_without_a_broadcasting_broker_the_heartbeat_decides() -> None:
    assert judge(None, beat(3, busy=False)).healthy
    assert not judge(None, beat(30, busy=False)).healthy
    ops = judge(None, None, inference=False)
    assert not ops.healthy and "cannot carry a ping" in ops.reason


def test_worker_names_are_expanded_as_celery_expands_them() -> None:
    host = socket.gethostname()
    assert worker_name("inpaint") == f"inpaint@{host}"
    assert worker_name("maintenance,webhooks") == f"maintenance+webhooks@{host}"
    assert worker_name("inpaint", "gpu0@%h") == f"gpu0@{host}"
    assert worker_name("inpaint", "box") == "celery@box"  # Celery reads a bare name as the host


def test_beat_is_judged_by_its_newest_schedule_file(tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    missing = judge_beat(schedule, stale_after=100, now=time.time())
    assert not missing.healthy and str(schedule) in missing.reason
    for suffix, age in ((".dat", 500), (".dir", 50)):  # dbm.dumb writes the schedule as several files
        path = tmp_path / f"celerybeat-schedule{suffix}"
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age, time.time() - age))
    assert judge_beat(schedule, stale_after=100, now=time.time()).healthy
    stale = judge_beat(schedule, stale_after=40, now=time.time())
    assert not stale.healthy and "50 s ago (limit 40 s)" in stale.reason


def test_beat_staleness_allows_one_sync_and_one_tick(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert BEAT_SYNC_SECONDS == 180
    assert BEAT_SYNC_SECONDS + settings.webhook_dispatch_interval_seconds < beat_stale_after(settings) < 300


def test_a_check_past_its_deadline_or_raising_is_unhealthy() -> None:
    assert within_deadline(lambda: Verdict(True, "fine")).healthy
    slow = within_deadline(lambda: (time.sleep(2), Verdict(True, "late"))[1], deadline=0.2)
    assert not slow.healthy and "did not finish within 0.2 s" in slow.reason

    def broken() -> Verdict:
        raise ConnectionError("broker gone\nsecond line")

    failed = within_deadline(broken)
    assert failed.reason == "the check failed: ConnectionError: broker gone"


def test_the_health_command_imports_no_torch() -> None:
    code = "import sys, worker.main, worker.health; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
