"""`inpaint-worker health`: does the worker (or beat) in this container do its work?

A worker is healthy when its consumer loop answers Celery's control ping by name: that loop is
the one that takes tasks off its queues. An inference worker on the solo pool runs each job in
that loop, so it cannot answer while a job runs; then its fleet row decides (a fresh heartbeat
that says `busy`: storage.database.fleet). An ops worker (threads pool) always answers when
alive. The embedded SQLite broker cannot broadcast, so no ping reaches a worker there: an
inference worker is judged by its heartbeat alone, and an ops worker cannot be checked.

Beat is healthy when its schedule file was written lately: Celery's PersistentScheduler
writes it at start and then at least every `BEAT_SYNC_SECONDS` (celery.beat).

Nothing here imports torch, and the whole check ends within `DEADLINE_SECONDS`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler, Scheduler
from celery.utils.nodenames import default_nodename, host_format

from storage.database.clock import database_now
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.fleet import list_workers
from storage.database.jobs import utcnow
from storage.settings import Settings

PING_SECONDS = 2.0
"""How long the worker has to answer the ping."""
DATABASE_SECONDS = 3.0
"""Deadline for connecting to the database and reading the fleet row."""
DEADLINE_SECONDS = 8.0
"""The whole check, past which it reports unhealthy (a Docker or Kubernetes probe allows 10 s)."""
OFFLINE_AFTER_BEATS = 3
"""A worker whose heartbeat is older than three intervals is offline (storage.database.fleet)."""
BEAT_SYNC_SECONDS = float(Scheduler.sync_every)
"""Celery's Scheduler.sync_every (180 s): beat writes its schedule file when this long has passed
since the last write, checked after each tick (celery.beat.Service.start) and each task sent."""
BEAT_MARGIN_SECONDS = 60.0
"""Room for a slow disk, a busy host and a tick that had to wait for the broker."""


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


@dataclass(frozen=True)
class FleetBeat:
    """What the fleet table says of one worker: when it last reported and whether a job was running."""

    last_seen: datetime
    busy: bool
    read_at: datetime | None = None
    """The database's time when the row was read: heartbeats are stamped on its clock (storage.database.clock),
    so their age is measured on it too. None: measured from `now`."""


Ping = Callable[[str], bool | None]
"""name -> True (answered), False (no answer in time), None (the broker cannot carry a ping)."""
FleetReader = Callable[[str], FleetBeat | None]


def worker_name(queues: str, name: str | None = None) -> str:
    """The Celery node name of `inpaint-worker run --queues QUEUES [--name NAME]`, as Celery
    expands it (`%h` and friends; a bare name gains `celery@`: celery.bin.worker)."""
    given = name or f"{queues.replace(',', '+')}@%h"
    return str(host_format(default_nodename(given)))


def judge_worker(
    name: str, *, ping: Ping, fleet: FleetReader | None, now: datetime, offline_after: timedelta
) -> Verdict:
    """The verdict on worker `name`; `fleet` is None for an ops worker, which writes no fleet row."""
    answered = ping(name)
    if answered:
        return Verdict(True, f"{name} answered a ping")
    silence = (
        "the broker cannot carry a ping (embedded SQLite broker)"
        if answered is None
        else f"{name} did not answer a ping within {PING_SECONDS:g} s"
    )
    if fleet is None:
        return Verdict(False, silence)
    row = fleet(name)
    if row is None:
        return Verdict(False, f"{silence}, and it has no row in the fleet table")
    age = ((row.read_at or now) - row.last_seen).total_seconds()
    if age > offline_after.total_seconds():
        return Verdict(
            False,
            f"{silence}, and its heartbeat is {age:.0f} s old (offline after {offline_after.total_seconds():g} s)",
        )
    if row.busy:
        return Verdict(True, f"{name} is running a job (heartbeat {age:.0f} s ago)")
    if answered is None:
        return Verdict(True, f"{name} reports itself idle (heartbeat {age:.0f} s ago); {silence}")
    return Verdict(False, f"{silence}, though its heartbeat ({age:.0f} s ago) says it is idle")


def ping_worker(celery: Celery) -> Ping:
    """Celery's control ping to one node; None when the transport has no fanout exchange (then
    workers run no remote control at all: celery.worker.consumer.control.Control.include_if)."""

    def ping(name: str) -> bool | None:
        with celery.connection_for_write() as conn:
            if not conn.supports_exchange_type("fanout"):
                return None
            replies = celery.control.ping(destination=[name], timeout=PING_SECONDS, limit=1, connection=conn)
        return any(name in reply for reply in replies or [])

    return ping


def read_fleet(settings: Settings) -> FleetReader:
    def read(name: str) -> FleetBeat | None:
        engine = make_engine(settings.resolved_database_url, timeout=DATABASE_SECONDS)
        try:
            with session_scope(make_session_factory(engine)) as session:
                read_at = database_now(session)
                rows = list_workers(session, now=read_at, stale_after=timedelta(0))
        finally:
            engine.dispose()
        for row in rows:
            if row["name"] == name:
                return FleetBeat(
                    last_seen=datetime.fromisoformat(row["last_seen"]), busy=bool(row["busy"]), read_at=read_at
                )
        return None

    return read


def beat_stale_after(settings: Settings) -> float:
    """Seconds after which an unwritten schedule file means beat is stuck or gone: one sync period,
    plus the longest sleep between two ticks (the shortest schedule interval here, at most
    beat's max loop interval), plus the margin."""
    shortest = min(
        settings.sweep_interval_seconds, settings.reaper_interval_seconds, settings.webhook_dispatch_interval_seconds
    )
    return BEAT_SYNC_SECONDS + min(shortest, float(PersistentScheduler.max_interval)) + BEAT_MARGIN_SECONDS


def judge_beat(schedule: Path, *, stale_after: float, now: float) -> Verdict:
    """Beat's schedule is a shelve: one file, or several with a suffix (dbm.dumb's .dat and .dir)."""
    written = [
        os.stat(path).st_mtime
        for suffix in PersistentScheduler.known_suffixes
        if (path := schedule.with_name(schedule.name + suffix)).is_file()
    ]
    if not written:
        return Verdict(False, f"beat's schedule file {schedule} does not exist")
    age = now - max(written)
    if age > stale_after:
        return Verdict(
            False, f"beat's schedule file {schedule} was last written {age:.0f} s ago (limit {stale_after:g} s)"
        )
    return Verdict(True, f"beat's schedule file {schedule} was written {age:.0f} s ago")


def check_beat(settings: Settings, schedule: Path) -> Verdict:
    return judge_beat(schedule, stale_after=beat_stale_after(settings), now=time.time())


def check_worker(settings: Settings, celery: Celery, name: str, *, inference: bool) -> Verdict:
    return judge_worker(
        name,
        ping=ping_worker(celery),
        fleet=read_fleet(settings) if inference else None,
        now=utcnow(),
        offline_after=timedelta(seconds=OFFLINE_AFTER_BEATS * settings.worker_heartbeat_seconds),
    )


def within_deadline(check: Callable[[], Verdict], deadline: float = DEADLINE_SECONDS) -> Verdict:
    """Run `check` on a daemon thread; past `deadline` (a broker or database that does not answer)
    the verdict is unhealthy. A failed check is unhealthy, named by its exception's type and first line."""
    verdicts: list[Verdict] = []

    def run() -> None:
        try:
            verdicts.append(check())
        except Exception as exc:  # noqa: BLE001 - any failure is a verdict, not a traceback
            first_line = (str(exc).splitlines() or [""])[0][:200]
            verdicts.append(Verdict(False, f"the check failed: {type(exc).__name__}: {first_line}"))

    thread = threading.Thread(target=run, name="health-check", daemon=True)
    thread.start()
    thread.join(deadline)
    return verdicts[0] if verdicts else Verdict(False, f"the check did not finish within {deadline:g} s")
