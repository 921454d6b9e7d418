"""Round trips to the stores a job touches, timed from this process: they explain the overhead's parts.

A submit stores two PNGs and commits a row; a job's worker reads two PNGs, writes
one, and commits a few conditional UPDATEs. These probes time the same kinds of
operation with the service's own code (storage.blobs.store, storage.database.engine) against the
stack's own stores, using the stack's settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from sqlalchemy import text

from benchmarks.report import p50_p99_ms
from storage.blobs.store import make_blob_store
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.settings import Settings
from tests.support.images import png_bytes, scene
from tests.support.stack import Stack


def time_calls(call: Callable[[int], object], count: int) -> list[float]:
    seconds = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - started)
    return seconds


def probe_stores(stack: Stack, count: int = 30) -> list[list[object]]:
    """Rows (store, operation, p50 ms, p99 ms) for the blob store and the database of `stack`."""
    settings = Settings(
        **{k.removeprefix("INPAINT_").lower(): v for k, v in stack.env.items() if k.startswith("INPAINT_")}
    )
    blobs = make_blob_store(settings)
    data = png_bytes(scene())
    kind = "S3 (moto)" if settings.storage_backend == "s3" else "local directory"
    put = time_calls(lambda i: blobs.put(f"probe/{os.getpid()}/{i}.png", data), count)
    get = time_calls(lambda i: blobs.get(f"probe/{os.getpid()}/{i}.png"), count)
    blobs.delete_prefix(f"probe/{os.getpid()}/")
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)

    def write(_: int) -> None:
        with session_scope(sessions) as session:
            session.execute(text("UPDATE api_keys SET name = name WHERE id = -1"))

    def read(_: int) -> None:
        with session_scope(sessions) as session:
            session.execute(text("SELECT count(*) FROM api_keys")).scalar_one()

    database = "PostgreSQL" if engine.dialect.name == "postgresql" else "SQLite"
    rows: list[list[object]] = [
        [stack.name, kind, f"put {len(data)} B PNG", *p50_p99_ms(put)],
        [stack.name, kind, "get", *p50_p99_ms(get)],
        [stack.name, database, "UPDATE + commit", *p50_p99_ms(time_calls(write, count))],
        [stack.name, database, "SELECT + commit", *p50_p99_ms(time_calls(read, count))],
    ]
    engine.dispose()
    return rows
