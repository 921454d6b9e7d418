"""A worker's heartbeat and its admin commands, in-process against a real (SQLite) database."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from storage.database.engine import session_scope
from storage.database.fleet import issue_command, list_workers, remove_worker
from storage.database.jobs import utcnow
from storage.settings import load_settings


def workers(bench) -> list[dict]:
    with session_scope(bench.sessions) as session:
        return list_workers(session, now=utcnow(), stale_after=timedelta(seconds=30))


def command(bench, action: str, target: str | None = None, *, age: float = 0) -> int:
    with session_scope(bench.sessions) as session:
        return issue_command(session, action, target=target, now=utcnow() - timedelta(seconds=age))


def test_worker_acts_on_commands_between_jobs_only(bench, tmp_path) -> None:
    from worker.engine.pipelines import PipelineCache
    from worker.jobs.fleet import FleetMember

    settings = load_settings(data_dir=tmp_path, worker_heartbeat_seconds=300)  # beats only when called
    cache, busy = PipelineCache("cpu"), threading.Lock()
    command(bench, "clear_cache", age=60)  # before this worker started: not replayed
    since = utcnow()
    load = command(bench, "load", "tiny-sd15")  # while it was starting up: replayed
    member = FleetMember(settings, bench.sessions, cache, busy)
    member.start("test@fleet", since=since, queues=["inpaint"])  # its thread beats once now, then every 300 s
    try:
        deadline = time.monotonic() + 120
        while member.cursor != load and time.monotonic() < deadline:
            time.sleep(0.1)
        assert member.cursor == load
        with busy:  # wait for the thread's beat to finish
            pass
        member.beat()
        assert [r["kind"] for r in cache.resident()] == ["sd15"], "the warm-up did not load the model"
        (row,) = [w for w in workers(bench) if w["name"] == "test@fleet"]
        assert row["online"] and not row["busy"] and row["resident"][0]["kind"] == "sd15"
        assert row["device"] == "cpu" and row["memory_total"] > 0
        source = row["resident"][0]["source"]
        assert row["queues"] == ["inpaint"] and row["weights"][source] == {"state": "loaded"}

        with busy:  # a job is running: the command waits
            command(bench, "clear_cache")
            member.beat()
            assert cache.resident(), "a command ran during a job"
            assert [w for w in workers(bench) if w["name"] == "test@fleet"][0]["busy"]
        member.beat()
        assert cache.resident() == []
        (row,) = [w for w in workers(bench) if w["name"] == "test@fleet"]
        assert row["weights"][source] == {"state": "present"}, "dropped from memory, still on disk"
    finally:
        member.stop()
    assert not [w for w in workers(bench) if w["name"] == "test@fleet"], "a stopped worker leaves the fleet"


def test_a_job_that_loads_a_model_is_reported_at_once(bench, tmp_path) -> None:
    from worker.engine.pipelines import PipelineCache
    from worker.jobs.fleet import FleetMember

    settings = load_settings(data_dir=tmp_path, worker_heartbeat_seconds=300)
    cache = PipelineCache("cpu")
    member = FleetMember(settings, bench.sessions, cache, threading.Lock())
    member.name = "test@after-job"  # joined, without the heartbeat thread: only the calls below report
    member.report(busy=False)

    def reported() -> list[tuple[str, str]] | None:
        rows = [w for w in workers(bench) if w["name"] == "test@after-job"]
        return [(r["kind"], r["source"]) for r in rows[0]["resident"]] if rows else None

    assert reported() == []
    cache.component("vae", "/weights/vae", lambda: object())  # what a job naming a VAE does
    member.report_if_changed()
    assert reported() == [("vae", "/weights/vae")], "verify_model would say 'not loaded' until the next beat"

    with session_scope(bench.sessions) as session:
        remove_worker(session, "test@after-job")
    member.report_if_changed()
    assert reported() is None, "a job that changed nothing wrote a heartbeat"
    cache.clear()  # what an eviction during a job does
    member.report_if_changed()
    assert reported() == []
