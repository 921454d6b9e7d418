"""GET /metrics in process: the metrics token opens the metrics and nothing else, and an empty one
opens nothing; the workers gauge counts the fleet table's rows. Scraping running stacks and the
workers' ports is tests/e2e/api/test_metrics.py."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.fleet import record_heartbeat
from storage.database.jobs import utcnow
from storage.settings import load_settings
from tests.support.app import in_process_app

TOKEN = {"authorization": "Bearer scrape-token-0123456789"}


def test_the_metrics_token_opens_metrics_only(tmp_path) -> None:
    client, keys = in_process_app(tmp_path, metrics_token="scrape-token-0123456789")
    with client:
        bearer = TOKEN
        response = client.get("/metrics", headers=bearer)
        assert response.status_code == 200, response.text
        assert "inpaint_jobs_submitted_total" in response.text or "inpaint_jobs_submitted" in response.text
        assert client.get("/v2/requests", headers=bearer).status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"x-api-key": keys["admin"]}).status_code == 200


def test_an_empty_metrics_token_opens_nothing(tmp_path) -> None:
    client, _ = in_process_app(tmp_path, metrics_token="")
    with client:
        assert client.get("/metrics", headers={"authorization": "Bearer "}).status_code == 401


def add_worker(tmp_path, name: str, *, queues: list[str], busy: bool, age: float) -> None:
    engine = make_engine(load_settings(data_dir=tmp_path).resolved_database_url)
    with session_scope(make_session_factory(engine)) as session:
        state = {"hostname": "h", "pid": 1, "device": "cpu", "memory_total": None, "memory_free": None}
        record_heartbeat(
            session, name=name, now=utcnow() - timedelta(seconds=age), resident=[], busy=busy, queues=queues, **state
        )
    engine.dispose()


def workers_gauge(client) -> dict[tuple[str, str], float]:
    response = client.get("/metrics", headers=TOKEN)
    assert response.status_code == 200, response.text
    return {
        (sample.labels["queue"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "inpaint_workers"
        for sample in family.samples
    }


def test_the_workers_gauge_counts_fleet_rows_by_queue_and_state(tmp_path) -> None:
    client, _ = in_process_app(tmp_path, metrics_token=TOKEN["authorization"].removeprefix("Bearer "))
    with client:
        assert workers_gauge(client) == {("inpaint", "idle"): 0, ("inpaint", "busy"): 0, ("inpaint", "offline"): 0}
        add_worker(tmp_path, "inpaint@a", queues=["inpaint"], busy=False, age=0)
        add_worker(tmp_path, "inpaint@b", queues=["inpaint"], busy=True, age=1)
        add_worker(tmp_path, "both@c", queues=["inpaint", "sdxl"], busy=True, age=0)
        add_worker(tmp_path, "sdxl@d", queues=["sdxl"], busy=False, age=3600)  # stale: offline, row kept
        assert workers_gauge(client) == {
            ("inpaint", "idle"): 1,
            ("inpaint", "busy"): 2,
            ("inpaint", "offline"): 0,
            ("sdxl", "idle"): 0,
            ("sdxl", "busy"): 1,
            ("sdxl", "offline"): 1,
        }
