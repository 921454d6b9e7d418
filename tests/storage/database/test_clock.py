"""database_now: the one clock that leases, heartbeats and deadlines are stamped and compared on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.database.clock import database_now


def test_database_now_is_aware_utc_and_the_current_time(db: Any) -> None:
    before = datetime.now(UTC)
    now = database_now(db)
    after = datetime.now(UTC)
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    # The database server runs on this machine in the tests: the same clock, give or take.
    assert before - timedelta(seconds=2) <= now <= after + timedelta(seconds=2)


def test_database_now_moves_on_within_one_transaction(db: Any) -> None:
    """statement_timestamp(), not now(): a long transaction does not freeze its clock."""
    first = database_now(db)
    time.sleep(0.05)
    assert database_now(db) - first >= timedelta(seconds=0.04)
