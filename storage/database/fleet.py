"""The inference workers as the database sees them: heartbeats and commands.

Every broker this service supports can carry tasks, but the embedded SQLite
broker cannot broadcast. So workers coordinate through the database, which works
on every deployment:

- each inference worker process upserts its row in `workers` every few seconds
  (device, free memory, resident models, busy or idle, its queues, and which registered
  weights it can load);
- `worker_commands` is an append-only list of requests to every worker
  (`clear_cache`, `load` a model, `evict` a source); each worker acts on the
  rows after its own cursor, between jobs, in id order.

A worker whose heartbeat is older than three intervals counts as offline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from storage.database.models import Job, JobStatus, WorkerCommand, WorkerRecord

COMMAND_ACTIONS = ("clear_cache", "load", "evict")
SERVABLE_STATES = frozenset({"loaded", "present", "download"})
"""The states of a worker's `weights` report (worker.engine.availability) in which it can serve a job."""


def record_heartbeat(session: Session, *, name: str, now: datetime, **state: Any) -> None:
    """Upsert this worker's row. The UPDATE comes first (SQLite: write before reading)."""
    result = session.execute(
        update(WorkerRecord)
        .where(WorkerRecord.name == name)
        .values(last_seen=now, **state)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(WorkerRecord(name=name, last_seen=now, started_at=now, **state))
        session.flush()


def remove_worker(session: Session, name: str) -> None:
    session.execute(delete(WorkerRecord).where(WorkerRecord.name == name))


def list_workers(session: Session, *, now: datetime, stale_after: timedelta) -> list[dict[str, Any]]:
    """Every worker row, newest heartbeat first, with `online` (heartbeat within `stale_after`)."""
    rows = session.execute(select(WorkerRecord).order_by(WorkerRecord.last_seen.desc())).scalars()
    return [
        {
            "name": r.name,
            "hostname": r.hostname,
            "pid": r.pid,
            "device": r.device,
            "memory_total": r.memory_total,
            "memory_free": r.memory_free,
            "resident": r.resident,
            "queues": r.queues,
            "weights": r.weights,
            "busy": r.busy,
            "started_at": r.started_at.isoformat(),
            "last_seen": r.last_seen.isoformat(),
            "online": now - r.last_seen <= stale_after,
        }
        for r in rows
    ]


def issue_command(session: Session, action: str, *, target: str | None = None, now: datetime) -> int:
    """Append a command for every worker; returns its id."""
    if action not in COMMAND_ACTIONS:
        raise ValueError(f"unknown worker command {action!r}")
    command = WorkerCommand(action=action, target=target, created_at=now)
    session.add(command)
    session.flush()
    return command.id


def commands_after(session: Session, cursor: int) -> list[WorkerCommand]:
    stmt = select(WorkerCommand).where(WorkerCommand.id > cursor).order_by(WorkerCommand.id)
    return list(session.execute(stmt).scalars())


def latest_command_id(session: Session, *, before: datetime | None = None) -> int:
    """The id of the last command (issued before `before`, if given); 0 when there is none."""
    stmt = select(func.coalesce(func.max(WorkerCommand.id), 0))
    if before is not None:
        stmt = stmt.where(WorkerCommand.created_at < before)
    return int(session.execute(stmt).scalar_one())


def queue_depths(session: Session) -> dict[str, dict[str, int]]:
    """Jobs QUEUED and PROCESSING, by queue."""
    stmt = (
        select(Job.queue, Job.status, func.count())
        .where(Job.status.in_([JobStatus.QUEUED.value, JobStatus.PROCESSING.value]))
        .group_by(Job.queue, Job.status)
    )
    depths: dict[str, dict[str, int]] = {}
    for queue, status, count in session.execute(stmt):
        depths.setdefault(queue, {"queued": 0, "processing": 0})[status.lower()] = int(count)
    return depths


WorkerReport = tuple[list[str], dict[str, Any]]
"""(queues, weights) of one worker."""


def online_workers(session: Session, *, now: datetime, stale_after: timedelta) -> list[WorkerReport]:
    """(queues, weights) of each worker whose heartbeat is within `stale_after`: what the API's
    serving check reads (one small query, cached per process for a second)."""
    stmt = select(WorkerRecord.queues, WorkerRecord.weights).where(WorkerRecord.last_seen >= now - stale_after)
    return [(list(queues or []), dict(weights or {})) for queues, weights in session.execute(stmt)]
