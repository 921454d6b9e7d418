"""One clock for leases, heartbeats and deadlines: the database's.

A worker stamps a job's claim, heartbeat and end, and its fleet row; the sweeper and the API
compare those stamps with "now" in other processes, often on other machines. With each
process on its own clock, a worker whose clock is behind looks dead while it works (its jobs
requeued, then failed `worker_lost`) and queue times come out negative. So every such stamp and
comparison takes the database's time:

- PostgreSQL: `statement_timestamp()`, one round trip inside the caller's transaction;
- SQLite (embedded: every process on one machine, so on one clock): the process clock, no query.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage.database.engine import session_scope


def database_now(session: Session) -> datetime:
    """The database's current time (aware, UTC), read in `session`'s transaction."""
    if session.get_bind().dialect.name == "sqlite":
        return datetime.now(UTC)
    value: datetime = session.execute(select(func.statement_timestamp())).scalar_one()
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def database_time(sessions: sessionmaker[Session]) -> datetime:
    """database_now on a session of its own, for a caller that compares with it in several transactions."""
    with session_scope(sessions) as session:
        return database_now(session)
