"""A full disk, for real: the embedded stack's image directory on a small tmpfs of its own, filled up.

/readyz says so (free space under INPAINT_MIN_FREE_DISK_MB, not just "writable"); a job whose results
cannot be written fails `storage_unavailable` within INPAINT_STORAGE_RETRY_SECONDS instead of being held;
once space returns, jobs complete again. Needs root (mount); skipped where tmpfs cannot be mounted.
"""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import job_body
from tests.support.stack import Stack, stack_env

RETRY_SECONDS = 3


def fill(directory: Path) -> Path:
    """Write zeros into `directory` until its disk is full; returns the file to delete."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 2**16)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "images"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def stack(small_disk: Path, tmp_path: Path) -> Iterator[Stack]:
    env = stack_env("embedded", tmp_path / "work", {})
    env |= {
        "INPAINT_STORAGE_DIR": str(small_disk),
        "INPAINT_STORAGE_RETRY_SECONDS": str(RETRY_SECONDS),
        "INPAINT_MIN_FREE_DISK_MB": "2",
        "INPAINT_SUBMIT_UNSERVABLE": "accept",
    }
    (tmp_path / "work").mkdir()
    stack = Stack(name="full-disk", workdir=tmp_path / "work", env=env)
    stack.start_all()
    try:
        yield stack
    finally:
        stack.stop_all()


def readiness(stack: Stack) -> tuple[int, dict[str, str]]:
    with stack.client() as client:
        answer = client.get("/readyz")
    return answer.status_code, answer.json()["checks"]


def test_a_full_disk_is_reported_fails_jobs_in_time_and_recovers(stack: Stack, small_disk: Path) -> None:
    stack.wait_ready(model="erase")
    assert readiness(stack) == (200, {"database": "ok", "broker": "ok", "storage": "ok"})
    stack.stop("worker")
    job_id = stack.submit("erase", job_body())  # its inputs are stored while there is room
    filler = fill(small_disk)

    status, checks = readiness(stack)
    assert status == 503 and checks["storage"].startswith("the image directory's disk is nearly full"), checks

    started = time.monotonic()
    stack.start("worker", "inpaint-worker", "run", "--queues", "inpaint")  # not start_worker: /readyz is 503
    final = stack.wait(job_id, timeout=120)
    assert final["status"] == "FAILED" and final["error_code"] == "storage_unavailable", final
    assert time.monotonic() - started < 60, "the job was held, not failed within the retry window"

    filler.unlink()
    assert readiness(stack)[0] == 200
    assert stack.wait(stack.submit("erase", job_body()), timeout=120)["status"] == "COMPLETED"
