"""Engines and sessions. One engine per process, built from settings and passed in."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
IMMEDIATE = "inpaint_sqlite_immediate"


def make_engine(url: str, *, timeout: float | None = None, **kwargs: Any) -> Engine:
    """Create an engine. SQLite gets WAL, a busy timeout and foreign keys on every connection.

    Up to 40 pooled connections: as many as the API's request threads (anyio's default),
    each of which holds at most one at a time (see api.deps.get_session).

    `timeout` (seconds) bounds the wait for a pooled connection and, on PostgreSQL, connecting
    (libpq's connect_timeout, at least 2 s) and each statement (statement_timeout). A server
    that is frozen rather than down answers nothing at all: api.edge.database_guard covers that.
    """
    parsed = make_url(url)
    if timeout is not None:
        kwargs.setdefault("pool_timeout", timeout)
    if parsed.get_backend_name() != "sqlite":
        if timeout is not None:
            kwargs.setdefault(
                "connect_args",
                {
                    "connect_timeout": max(2, math.ceil(timeout)),
                    "options": f"-c statement_timeout={round(timeout * 1000)}",
                },
            )
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 30)
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 30)
    kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin)
    return engine


def _configure_sqlite(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off so that "begin" below decides.
    dbapi_conn.isolation_level = None
    set_sqlite_pragmas(dbapi_conn, _record)


def set_sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the one writer; the busy timeout makes writers queue."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _begin(conn: Any) -> None:
    # A deferred BEGIN: readers never wait. Convention for SQLite's sake: a
    # transaction that writes issues its write first (the conditional UPDATEs of
    # storage.database.jobs do), because a deferred transaction that reads and then writes
    # gets "database is locked" at once if another writer got in between. One that
    # must read first opens with write_scope: BEGIN IMMEDIATE queues it as a writer.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(IMMEDIATE) else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def write_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """session_scope for a change that reads before it writes. On SQLite the transaction takes the
    write lock when it begins (waiting its turn behind other writers) instead of failing at its
    first write; on PostgreSQL it is an ordinary transaction."""
    with session_scope(factory) as session:
        session.connection(execution_options={IMMEDIATE: True})
        yield session
