"""The job counters behind /metrics (storage.database.stats), on SQLite and PostgreSQL."""

from __future__ import annotations

from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.stats import add_counts, read_counts
from tests.support.stack import unique_name


def test_counters_add_up_across_sessions(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    sessions = make_session_factory(engine)
    name = unique_name("test_")
    for n in (2, 3):
        with session_scope(sessions) as session:
            add_counts(session, {name: n, "unused": 0})
    with session_scope(sessions) as session:
        counts = read_counts(session)
    engine.dispose()
    assert counts[name] == 5 and "unused" not in counts
