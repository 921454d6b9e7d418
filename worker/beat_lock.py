"""One beat at a time: `inpaint-worker beat` holds a lock for its whole life before it schedules.

A second beat (a rolling deploy, a mistaken second replica) waits for the lock instead of
sending every periodic task twice. On PostgreSQL the lock is a session-level advisory lock
held by a connection of its own, so any host sharing the database sees it; on SQLite (the
embedded default, one machine) it is an exclusive `flock` on a file next to beat's schedule.
Either is released by the operating system or the server when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Protocol

from sqlalchemy import Connection, create_engine, select
from sqlalchemy import func as sql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

ADVISORY_KEY = 0x1A9A_1B7E_BEA7_0001
"""The advisory lock id of beat (one bigint shared by every beat of one database)."""
RETRY_SECONDS = 5.0
"""How often a waiting beat tries the lock again."""
WATCH_SECONDS = 30.0
"""How often the holder checks that its PostgreSQL connection, and so its lock, is still there."""
LOST_LOCK_EXIT = 70  # EX_SOFTWARE: the supervisor restarts beat, which takes the lock again or waits


class BeatLock(Protocol):
    description: str

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""

    def release(self) -> None: ...


class FileLock:
    """An exclusive flock on `path` (SQLite: every beat of the database is on this machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class AdvisoryLock:
    """PostgreSQL's pg_try_advisory_lock on a dedicated connection, held until release or exit."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self.description = f"PostgreSQL advisory lock {ADVISORY_KEY} on {make_url(url).database}"
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        conn = self.engine.connect()
        try:
            taken = bool(conn.execute(select(sql.pg_try_advisory_lock(ADVISORY_KEY))).scalar_one())
            conn.commit()  # a session-level lock outlives the transaction
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        self._conn = conn
        return True

    def alive(self) -> bool:
        """Whether the connection holding the lock still answers (a server restart drops both)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(select(1))
            self._conn.commit()
        except Exception:  # noqa: BLE001 - any failure means the lock may be gone
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ending the session releases its advisory locks
            self._conn = None
        self.engine.dispose()


def beat_lock(database_url: str, schedule: Path) -> BeatLock:
    """The lock that fits the database: advisory on PostgreSQL, a file next to the schedule on SQLite."""
    backend = make_url(database_url).get_backend_name()
    if backend == "sqlite":
        return FileLock(schedule.with_name(schedule.name + ".lock"))
    if backend == "postgresql":
        return AdvisoryLock(database_url)
    raise ValueError(f"INPAINT_DATABASE_URL: no beat lock for a {backend!r} database (postgresql or sqlite)")


def wait_for_lock(lock: BeatLock, *, stop: threading.Event, retry_seconds: float = RETRY_SECONDS) -> bool:
    """Take `lock`, trying every `retry_seconds`; False when `stop` is set first. Logs once if it waits."""
    waiting = False
    while not stop.is_set():
        if lock.try_acquire():
            if waiting:
                log.info("took the %s; this beat now schedules", lock.description)
            return True
        if not waiting:
            log.warning(
                "another beat holds the %s; waiting for it (retrying every %g s)", lock.description, retry_seconds
            )
            waiting = True
        stop.wait(retry_seconds)
    return False


def acquire_or_stop(lock: BeatLock) -> bool:
    """`wait_for_lock` with SIGTERM and SIGINT ending the wait: False means exit cleanly. The
    previous handlers are restored once the wait is over (beat installs its own)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d while waiting for the beat lock; exiting", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return wait_for_lock(lock, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch_lock(lock: BeatLock, *, every: float = WATCH_SECONDS) -> threading.Thread | None:
    """For an advisory lock: a daemon thread that ends the process if the lock's connection is lost,
    since a server restart releases the lock and a second beat may then take it."""
    if not isinstance(lock, AdvisoryLock):
        return None

    def run() -> None:
        while True:
            threading.Event().wait(every)
            if not lock.alive():
                log.critical("lost the connection holding the %s; exiting so that beat restarts", lock.description)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(LOST_LOCK_EXIT)

    thread = threading.Thread(target=run, name="beat-lock-watch", daemon=True)
    thread.start()
    return thread
