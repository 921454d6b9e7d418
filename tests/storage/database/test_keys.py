"""ensure_key under a race: every API process creates the bootstrap key at start."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, func, select

from storage.database.engine import make_engine, make_session_factory, session_scope, write_scope
from storage.database.jobs import utcnow
from storage.database.keys import ensure_key, generate_key, hash_key
from storage.database.models import ApiKey

PROCESSES = 6


def test_processes_starting_together_create_the_key_once(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    sessions = make_session_factory(engine)
    key = generate_key()
    start = threading.Barrier(PROCESSES)

    def start_api_process() -> bool:
        start.wait()
        with write_scope(sessions) as session:
            return ensure_key(session, key=key, name="bootstrap", is_admin=True, now=utcnow())

    try:
        with ThreadPoolExecutor(PROCESSES) as pool:
            created = list(pool.map(lambda _: start_api_process(), range(PROCESSES)))
        with session_scope(sessions) as session:
            rows = session.scalar(select(func.count()).where(ApiKey.key_hash == hash_key(key)))
        assert created.count(True) == 1 and rows == 1, created
    finally:
        with session_scope(sessions) as session:
            session.execute(delete(ApiKey).where(ApiKey.key_hash == hash_key(key)))
        engine.dispose()
