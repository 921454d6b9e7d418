"""One key's dead receiver must not delay another key's webhooks (worker.ops.webhooks, in process).

`OpsPool` stands in for the ops worker: a pool of 8 threads (what scripts/serve gives it)
running the same calls as its tasks (worker.tasks.webhooks) in the order they were
published, and the dispatcher ticking beside them, against real receivers on loopback.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from storage.database.engine import session_scope, write_scope
from storage.database.jobs import claim_job, complete_job, create_job, utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.database.models import WebhookDelivery
from storage.database.webhook_queue import Lease, lease_delivery
from storage.database.webhooks import FAILED, list_deliveries
from storage.settings import load_settings
from storage.stores import Stores
from tests.support.http_server import BlackHole, Received, Reply, ScriptedServer
from tests.support.waiting import wait_until
from worker.ops import webhooks
from worker.ops.context import OpsContext

DEAD_TIMEOUT = 15.0
"""Each attempt at the dead receiver waits this long (the default); the healthy key's event must arrive
within PROMPT, which leaves room for a busy machine (0.2 to 1 s on a loaded 2-core one)."""
PROMPT = 3.0


class OpsPool:
    """The ops worker's thread pool and its dispatcher, in process. `close` waits for the attempts
    under way (each bounded by its deadline), so stop a dead receiver first."""

    def __init__(self, ctx: OpsContext, threads: int = 8, tick: float = 0.25) -> None:
        self.ctx, self.tick = ctx, tick
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.stopping = threading.Event()
        self.ticker = threading.Thread(target=self._dispatch, daemon=True)

    def start(self) -> OpsPool:
        self.ticker.start()
        return self

    def job_finished(self, job_id: str) -> None:
        """worker.tasks.webhooks.job_finished: write the terminal event, attempt it."""

        def run() -> None:
            delivery_id = webhooks.write_terminal_event(self.ctx, job_id)
            if delivery_id:
                webhooks.attempt(self.ctx, delivery_id)

        self.pool.submit(run)

    def deliver(self, delivery_id: str) -> None:
        self.pool.submit(webhooks.attempt, self.ctx, delivery_id)

    def _dispatch(self) -> None:
        while not self.stopping.wait(self.tick):
            webhooks.dispatch(self.ctx, self.deliver)

    def stop_dispatching(self) -> None:
        self.stopping.set()
        self.ticker.join(timeout=5)

    def close(self) -> None:
        self.stop_dispatching()
        self.pool.shutdown(wait=True, cancel_futures=True)


def context(tmp_path, **overrides: object) -> OpsContext:
    fields: dict[str, object] = {
        "webhook_timeout_seconds": DEAD_TIMEOUT,
        "webhook_retry_schedule": [3600],
        "webhook_max_in_flight_per_key": 2,
    }
    settings = load_settings(data_dir=tmp_path, allow_loopback_urls=True, **(fields | overrides))
    upgrade(settings.resolved_database_url)
    return OpsContext.build(settings, publish=lambda *a: None, stores=Stores.open(settings))


def finished_jobs(ctx: OpsContext, url: str, count: int, *, finish: int | None = None) -> list[str]:
    """`count` jobs of a new key, each with `url` as its webhook: the first `finish` (all) COMPLETED,
    the others PROCESSING."""
    ids = [f"job-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with session_scope(ctx.sessions) as session:
        key = create_key(session, name="k", is_admin=False, now=utcnow()).record
        for job_id in ids:
            create_job(
                session,
                job_id=job_id,
                api_key_id=key.id,
                model="erase",
                queue="inpaint",
                params={"seed": 1},
                input_keys={},
                base64_output=False,
                now=utcnow(),
                webhook_url=url,
            )
    for n, job_id in enumerate(ids):
        with session_scope(ctx.sessions) as session:
            claim_job(session, job_id, now=utcnow())
        if n >= (count if finish is None else finish):
            continue
        with session_scope(ctx.sessions) as session:
            complete_job(
                session,
                job_id,
                attempt=1,
                output_keys=[f"jobs/{job_id}/output/1-0.png"],
                output_seeds=[1],
                inference_time=0.1,
                now=utcnow(),
                ttl=timedelta(hours=1),
            )
    return ids


@pytest.fixture
def dead() -> Iterator[BlackHole]:
    hole = BlackHole().start()
    yield hole
    hole.stop()


@pytest.fixture
def receiver() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


def test_a_dead_receiver_does_not_delay_another_keys_webhook(tmp_path, dead, receiver) -> None:
    receiver.routes["/hook"] = Reply(200)
    ctx = context(tmp_path)
    stuck = finished_jobs(ctx, f"{dead.url}/never", 20)
    (healthy,) = finished_jobs(ctx, f"{receiver.url}/hook", 1)
    pool = OpsPool(ctx).start()
    try:
        for job_id in stuck:  # all published first: the healthy key's task is the last in the queue
            pool.job_finished(job_id)
        pool.job_finished(healthy)
        started = time.monotonic()
        wait_until(lambda: receiver.received, timeout=DEAD_TIMEOUT / 2, what="the healthy key's webhook")
        took = time.monotonic() - started
        assert took < PROMPT, f"the healthy key's webhook took {took:.1f} s behind a dead receiver"
        time.sleep(0.5)  # the dispatcher ticks a few times: still no more than the key's share
        assert dead.connections == 2, "the dead receiver's key holds no more than its in-flight limit"
    finally:
        pool.stop_dispatching()
        dead.stop()  # the two held attempts fail now instead of at their deadline
        pool.close()
    with session_scope(ctx.sessions) as session:
        waiting = [list_deliveries(session, job_id)[0].delivery for job_id in stuck]
    assert all(d.status == "pending" for d in waiting), "put off, not lost"
    assert sorted(d.attempt_count for d in waiting) == [0] * 18 + [1, 1], "only two were attempted"


def test_put_off_deliveries_go_out_as_the_keys_slots_free(tmp_path, receiver) -> None:
    """Every event exactly once, never more than two of the key's at once, none left behind."""
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow(_: Received) -> Reply:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return Reply(200)

    receiver.routes["/slow"] = slow
    ctx = context(tmp_path)
    jobs = finished_jobs(ctx, f"{receiver.url}/slow", 8)
    pool = OpsPool(ctx).start()
    try:
        for job_id in jobs:
            pool.job_finished(job_id)
        wait_until(lambda: len(receiver.received) >= len(jobs), timeout=15, what="every event")
        time.sleep(0.5)  # a doubled delivery would show up now
    finally:
        pool.close()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == len(jobs), "each event exactly once"
    assert state["most"] <= 2, f"{state['most']} of one key's deliveries were in flight at once"
    with session_scope(ctx.sessions) as session:
        events = [list_deliveries(session, job_id)[0] for job_id in jobs]
    assert all(v.delivery.status == "delivered" and len(v.attempts) == 1 for v in events)


def test_a_progress_event_over_the_keys_limit_is_dropped_with_its_reason(tmp_path, dead) -> None:
    ctx = context(tmp_path)
    *ended, running = finished_jobs(ctx, f"{dead.url}/never", 3, finish=2)
    in_flight = [webhooks.write_terminal_event(ctx, job_id) for job_id in ended]
    with write_scope(ctx.sessions) as session:  # both of the key's terminal events are being sent
        for delivery_id in in_flight:
            assert delivery_id is not None
            lease = lease_delivery(
                session, delivery_id, now=utcnow(), lease=timedelta(minutes=1), limits=webhooks.delivery_limits(ctx)
            )
            assert lease is Lease.TAKEN
    progress = webhooks.write_progress_event(ctx, running, 1, 4)
    assert progress is not None
    assert webhooks.attempt(ctx, progress) == FAILED, "dropped: it would be stale by the time a slot frees"
    with session_scope(ctx.sessions) as session:
        view = next(v for v in list_deliveries(session, running) if v.delivery.id == progress)
    assert view.delivery.status == FAILED and view.attempts[0].status_code is None
    assert "2 deliveries of this key were in flight" in view.attempts[0].error
    assert dead.connections == 0


def test_a_rate_limited_retry_is_put_off_not_sent(tmp_path, receiver) -> None:
    receiver.routes["/fail"] = Reply(500)
    ctx = context(tmp_path, webhook_retry_schedule=[0, 0, 0], webhook_retries_per_key_per_minute=1)
    first, second = finished_jobs(ctx, f"{receiver.url}/fail", 2)
    ids = [webhooks.write_terminal_event(ctx, job_id) for job_id in (first, second)]
    assert [webhooks.attempt(ctx, d) for d in ids] == ["pending", "pending"]  # first attempts: no limit
    assert webhooks.attempt(ctx, ids[0]) == "pending"  # the key's one retry this minute
    before = time.monotonic()
    assert webhooks.attempt(ctx, ids[1]) is None, "a second retry within the minute is put off"
    assert len(receiver.received) == 3
    with session_scope(ctx.sessions) as session:
        put_off = session.get(WebhookDelivery, ids[1])
        assert put_off is not None and put_off.attempt_count == 1 and put_off.dispatched_at is None
        assert put_off.next_attempt_at > utcnow() + timedelta(seconds=50), "by one retry's share of the minute"
    assert time.monotonic() - before < 1, "putting off sends nothing and waits for nothing"
