"""A transaction that reads before it writes must not fail because another writer got in between.

On SQLite a deferred transaction that has read, and then tries to write while another
connection holds the write lock, gets "database is locked" at once: the busy timeout
does not apply, since waiting could deadlock. write_scope begins such a transaction
with BEGIN IMMEDIATE, so it queues for the lock instead. This is what made
POST /v2/webhook-secret/rotate answer 500 in CI while a worker was writing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from storage.database.engine import make_engine, make_session_factory, session_scope, write_scope


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    yield make_session_factory(engine)
    engine.dispose()


def read_then_write_while_another_writes(sessions, scope) -> int:
    """Read the counter, let another connection take the write lock for 0.5 s, then increment."""
    locked, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with session_scope(sessions) as other:
            other.execute(text("UPDATE counter SET n = n + 100"))
            locked.set()
            release.wait(5)

    with scope(sessions) as session:
        seen = session.execute(text("SELECT n FROM counter")).scalar_one()
        thread = threading.Thread(target=other_writer)
        thread.start()
        locked.wait(1)  # under write_scope it never comes: this transaction holds the lock, the other queues
        threading.Timer(0.5, release.set).start()
        try:
            session.execute(text("UPDATE counter SET n = :n"), {"n": seen + 1})
        finally:
            release.set()
    thread.join()
    with session_scope(sessions) as session:
        return session.execute(text("SELECT n FROM counter")).scalar_one()


def test_a_deferred_read_then_write_fails_when_another_writer_gets_in(sessions) -> None:
    with pytest.raises(OperationalError, match="database is locked"):
        read_then_write_while_another_writes(sessions, session_scope)


def test_write_scope_queues_instead(sessions) -> None:
    started = time.monotonic()
    final = read_then_write_while_another_writes(sessions, write_scope)
    assert final == 101, "both writes landed, one after the other"
    assert time.monotonic() - started < 10
