"""One beat at a time: a second locker does not get the lock until the first releases it, on
PostgreSQL (advisory lock) and on SQLite (a file lock); a waiting `inpaint-worker beat` says so
once and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.services import new_postgres_database
from tests.support.stack import BIN
from worker.beat_lock import AdvisoryLock, BeatLock, FileLock, beat_lock, wait_for_lock


def assert_exclusive(first: BeatLock, second: BeatLock) -> None:
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
        assert not second.try_acquire()  # a failed try leaves nothing held
    finally:
        first.release()
    assert second.try_acquire()
    try:
        assert not first.try_acquire()
    finally:
        second.release()


def test_the_file_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    path = tmp_path / "celerybeat-schedule.lock"
    assert_exclusive(FileLock(path), FileLock(path))


def test_the_advisory_lock_is_exclusive_until_released(postgres_url: str) -> None:
    url = new_postgres_database(postgres_url)
    first, second = AdvisoryLock(url), AdvisoryLock(url)
    try:
        assert_exclusive(first, second)
        assert first.try_acquire() and first.alive()
    finally:
        first.release()
        second.release()
    assert not first.alive()


def test_the_database_picks_the_lock(tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    lock = beat_lock(f"sqlite:///{tmp_path / 'inpaint.db'}", schedule)
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "celerybeat-schedule.lock"
    assert isinstance(beat_lock("postgresql+psycopg://u@localhost/db", schedule), AdvisoryLock)
    with pytest.raises(ValueError, match="'mysql'"):
        beat_lock("mysql://u@localhost/db", schedule)


def test_a_waiter_takes_the_lock_once_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder, waiter = FileLock(path), FileLock(path)
    assert holder.try_acquire()
    got: list[bool] = []
    thread = threading.Thread(
        target=lambda: got.append(wait_for_lock(waiter, stop=threading.Event(), retry_seconds=0.05))
    )
    thread.start()
    time.sleep(0.3)
    assert got == []
    holder.release()
    thread.join(timeout=5)
    assert got == [True]
    waiter.release()


def test_a_stopped_waiter_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = FileLock(path)
    assert holder.try_acquire()
    stop = threading.Event()
    stop.set()
    assert wait_for_lock(FileLock(path), stop=stop, retry_seconds=0.05) is False
    holder.release()


def test_a_second_beat_waits_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """The real `inpaint-worker beat`, embedded: while the lock is held it logs once that another beat
    holds it, schedules nothing (no schedule file), and SIGTERM ends it with status 0."""
    schedule = tmp_path / "celerybeat-schedule"
    holder = FileLock(tmp_path / "celerybeat-schedule.lock")
    assert holder.try_acquire()
    env = {**os.environ, "INPAINT_DATA_DIR": str(tmp_path / "data"), "INPAINT_LOG_FORMAT": "text"}
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "inpaint-worker"), "beat", "--schedule", str(schedule)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "another beat holds" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1)
        assert not list(tmp_path.glob("celerybeat-schedule.d*")) and not schedule.exists()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        holder.release()
    assert log.read_text().count("another beat holds") == 1
