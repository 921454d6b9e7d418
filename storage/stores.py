"""The stores a process opens once from its settings: the database (engine and sessions) and the
object store. The API, the workers and the admin CLI open them here, and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.blobs.store import BlobStore, make_blob_store
from storage.database.engine import make_engine, make_session_factory
from storage.settings import Settings

WORKER_POOL = (2, 2)
"""A worker's database pool (size, overflow) on a server database: its threads hold few connections
at once."""


@dataclass
class Stores:
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore

    @classmethod
    def open(cls, settings: Settings, *, pool: tuple[int, int] | None = None, timeout: float | None = None) -> Stores:
        """pool: (size, overflow) of a server database's connection pool, for a process with few
        threads (WORKER_POOL); None keeps make_engine's, sized for the API's request threads.
        SQLite always keeps make_engine's. timeout: make_engine's (the API's
        INPAINT_DATABASE_TIMEOUT_SECONDS); None waits as long as the drivers do."""
        url = settings.resolved_database_url
        if pool is not None and not url.startswith("sqlite"):
            engine = make_engine(url, timeout=timeout, pool_size=pool[0], max_overflow=pool[1])
        else:
            engine = make_engine(url, timeout=timeout)
        return cls(engine=engine, sessions=make_session_factory(engine), blobs=make_blob_store(settings))

    def close(self) -> None:
        self.engine.dispose()
