"""A frozen PostgreSQL (every server process stopped with SIGSTOP: connections open, nothing answers)
gives 503 with Retry-After within 5 s, for requests already waiting on it and for new ones; /healthz
stays 200; and no submit that was answered 503 is created once the database thaws.

The database is a private cluster (freezing the suite's shared one would stall other tests); the
app is the real one, under uvicorn in a thread, on its embedded storage and broker."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from api.app import create_app
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.database.models import Job
from storage.settings import load_settings
from tests.support.images import job_body
from tests.support.services import PostgresServer, free_port, wait_for_port
from tests.support.waiting import wait_until

ANSWER_WITHIN = 5.0


def cluster_pids(server: PostgresServer) -> list[int]:
    postmaster = int((server.workdir / "data" / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture
def frozen_rig(tmp_path: Path) -> Iterator[tuple[str, str, PostgresServer, Any]]:
    server = PostgresServer().start()
    try:
        url = server.create_database("frozen")
        upgrade(url)
        engine = make_engine(url)
        with session_scope(make_session_factory(engine)) as session:
            secret = create_key(session, name="u", is_admin=False, now=utcnow()).secret
        settings = load_settings(data_dir=tmp_path, database_url=url, submit_unservable="accept")  # no worker runs
        port = free_port()
        uv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", secret, server, engine
        uv.should_exit = True
        thread.join(timeout=15)
        engine.dispose()
    finally:
        signal_all(cluster_pids(server), signal.SIGCONT)
        server.stop()


def timed(call: Any) -> tuple[float, httpx.Response | Exception]:
    started = time.monotonic()
    try:
        outcome: httpx.Response | Exception = call()
    except httpx.HTTPError as exc:
        outcome = exc
    return time.monotonic() - started, outcome


def count_jobs(engine: Any) -> int:
    with session_scope(make_session_factory(engine)) as session:
        return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


def test_a_frozen_database_is_a_quick_503_and_nothing_answered_503_is_created(
    frozen_rig: tuple[str, str, PostgresServer, Any],
) -> None:
    base, secret, server, engine = frozen_rig
    headers = {"x-api-key": secret}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        assert client.post("/v2/erase", json=job_body()).status_code == 200
        frozen = cluster_pids(server)
        signal_all(frozen, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(8) as pool:
                waiting = [pool.submit(timed, lambda: client.post("/v2/erase", json=job_body())) for _ in range(4)]
                readiness = pool.submit(timed, lambda: client.get("/readyz"))
                liveness = timed(lambda: client.get("/healthz"))
                results = [f.result(timeout=30) for f in waiting]
                ready = readiness.result(timeout=30)
            time.sleep(0.5)
            late = timed(lambda: client.post("/v2/erase", json=job_body()))
        finally:
            signal_all(frozen, signal.SIGCONT)
        for took, response in [*results, ready, late]:
            assert isinstance(response, httpx.Response), response
            assert response.status_code == 503, (response.status_code, response.text)
            assert took < ANSWER_WITHIN, f"a 503 took {took:.1f} s"
            assert int(response.headers["Retry-After"]) > 0
        assert isinstance(liveness[1], httpx.Response) and liveness[1].status_code == 200
        assert late[0] < 1.0, "a new request while the database is stalled must be refused at once"
        print(f"\n503s after {', '.join(f'{t:.2f}' for t, _ in [*results, ready, late])} s")

        # Thawed: the abandoned submits finish in the background and roll back; new submits work.
        wait_until(lambda: client.post("/v2/erase", json=job_body()).status_code == 200, timeout=20)
        time.sleep(1.0)
    assert count_jobs(engine) == 2, "a submit answered 503 was created after the database thawed"
