"""Batches: many submissions in one request, each accepted or rejected on its own."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.database.models import Batch, Job


def create_batch(session: Session, *, batch_id: str, api_key_id: int, now: datetime) -> Batch:
    batch = Batch(id=batch_id, api_key_id=api_key_id, created_at=now, items=[])
    session.add(batch)
    session.flush()
    return batch


def record_items(session: Session, batch_id: str, items: list[dict[str, Any]]) -> None:
    """One UPDATE with no read before it: on SQLite a transaction that reads and then writes fails
    at once ("database is locked") if a worker committed in between, as it does while the batch's
    first jobs already run."""
    session.execute(update(Batch).where(Batch.id == batch_id).values(items=items))


def get_batch(session: Session, batch_id: str, *, api_key_id: int) -> Batch | None:
    batch = session.get(Batch, batch_id)
    return batch if batch is not None and batch.api_key_id == api_key_id else None


def job_states(session: Session, batch_id: str) -> dict[str, str]:
    rows = session.execute(select(Job.id, Job.status).where(Job.batch_id == batch_id))
    return {row.id: row.status for row in rows}


def summarise(batch: Batch, states: dict[str, str]) -> dict[str, Any]:
    """Counts by state (REJECTED for refused items), each item's state, and whether all have ended."""
    items = []
    for item in batch.items:
        state = states.get(item.get("request_id", ""), "REJECTED" if "error" in item else "EXPIRED")
        items.append({**item, "status": state})
    counts = Counter(i["status"] for i in items)
    return {
        "batch_id": batch.id,
        "total": len(items),
        "counts": dict(counts),
        "items": items,
        "done": counts["QUEUED"] == 0 and counts["PROCESSING"] == 0,
    }
