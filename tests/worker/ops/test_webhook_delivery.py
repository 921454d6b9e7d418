"""Webhook delivery in-process (worker.ops.webhooks), against a real receiver: the loopback switch, the
decisions. The signatures themselves are tests/storage/egress/test_signing.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from storage.database.engine import session_scope
from storage.database.jobs import claim_job, complete_job, create_job, utcnow
from storage.database.keys import create_key
from storage.database.migrate import upgrade
from storage.database.webhooks import list_deliveries
from storage.settings import load_settings
from storage.stores import Stores
from tests.support.http_server import Reply, ScriptedServer
from worker.ops import webhooks
from worker.ops.context import OpsContext


def context(tmp_path, *, loopback: bool) -> OpsContext:
    settings = load_settings(data_dir=tmp_path, allow_loopback_urls=loopback, webhook_timeout_seconds=2)
    upgrade(settings.resolved_database_url)
    return OpsContext.build(settings, publish=lambda *a: None, stores=Stores.open(settings))


def finished_job(ctx: OpsContext, url: str) -> str:
    with session_scope(ctx.sessions) as session:
        key = create_key(session, name="k", is_admin=False, now=utcnow()).record
        create_job(
            session,
            job_id="job-1",
            api_key_id=key.id,
            model="erase",
            queue="inpaint",
            params={"seed": 1},
            input_keys={},
            base64_output=False,
            now=utcnow(),
            webhook_url=url,
            track_id=7,
        )
    with session_scope(ctx.sessions) as session:
        claim_job(session, "job-1", now=utcnow())
        complete_job(
            session,
            "job-1",
            attempt=1,
            output_keys=["jobs/job-1/output/1-0.png"],
            output_seeds=[1],
            inference_time=0.1,
            now=utcnow(),
            ttl=timedelta(hours=1),
        )
    return "job-1"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_with_the_switch_off_loopback_is_never_connected_to(tmp_path, host: str) -> None:
    canary = ScriptedServer().start()
    try:
        ctx = context(tmp_path, loopback=False)
        job_id = finished_job(ctx, f"http://{host}:{canary.port}/hook")
        delivery_id = webhooks.write_terminal_event(ctx, job_id)
        assert webhooks.attempt(ctx, delivery_id) == "failed", "a non-public address is not worth retrying"
        assert canary.received == []
        with session_scope(ctx.sessions) as session:
            (view,) = list_deliveries(session, job_id)
        assert "not public" in view.attempts[0].error and view.attempts[0].status_code is None
    finally:
        canary.stop()


def test_with_the_switch_on_the_event_is_sent_once(tmp_path) -> None:
    receiver = ScriptedServer().start()
    receiver.routes["/hook"] = Reply(200)
    try:
        ctx = context(tmp_path, loopback=True)
        job_id = finished_job(ctx, f"{receiver.url}/hook")
        delivery_id = webhooks.write_terminal_event(ctx, job_id)
        assert webhooks.write_terminal_event(ctx, job_id) is None, "a job has one terminal event"
        assert webhooks.attempt(ctx, delivery_id) == "delivered"
        assert webhooks.attempt(ctx, delivery_id) is None, "a delivered event is not sent again"
        (request,) = receiver.received
        assert json.loads(request.body)["track_id"] == 7
    finally:
        receiver.stop()


def test_dispatcher_writes_missing_events_and_nudges_due_ones(tmp_path) -> None:
    ctx = context(tmp_path, loopback=True)
    finished_job(ctx, "http://127.0.0.1:9/hook")
    nudged: list[str] = []
    assert webhooks.dispatch(ctx, nudged.append) == 1
    assert webhooks.dispatch(ctx, nudged.append) == 0, "a nudge is not repeated while it may be in flight"
    assert len(nudged) == 1


@pytest.mark.parametrize(
    "status,error,retry_after,number,expected",
    [
        (200, None, None, 1, "delivered"),
        (299, None, None, 3, "delivered"),
        (410, None, None, 1, "disabled"),
        (500, None, None, 1, timedelta(seconds=5)),
        (301, None, None, 2, timedelta(seconds=60)),
        (429, None, timedelta(seconds=600), 1, timedelta(seconds=600)),
        (503, None, timedelta(seconds=1), 2, timedelta(seconds=60)),
        (None, "timed out after 15 s", None, 1, timedelta(seconds=5)),
        (None, "host 'x' resolves to an address that is not public", None, 1, "failed"),
        (500, None, None, 9, "failed"),
    ],
)
def test_decide(status, error, retry_after, number, expected) -> None:
    schedule = [5, 60, 300, 1800, 7200, 21600, 43200, 86400]
    assert (
        webhooks.decide(
            schedule, number=number, terminal=True, status_code=status, error=error, retry_after=retry_after
        )
        == expected
    )


def test_progress_events_are_never_retried() -> None:
    assert webhooks.decide([5], number=1, terminal=False, status_code=500, error=None, retry_after=None) == "failed"


def test_default_schedule_spans_at_least_a_day() -> None:
    assert sum(load_settings().webhook_retry_schedule) >= 24 * 3600


def test_parse_retry_after() -> None:
    assert webhooks.parse_retry_after("120") == timedelta(seconds=120)
    assert webhooks.parse_retry_after("soon") is None
    assert webhooks.parse_retry_after(None) is None
