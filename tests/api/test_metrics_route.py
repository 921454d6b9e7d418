"""GET /metrics in process: the metrics token opens the metrics and nothing else, and an empty one
opens nothing. Scraping running stacks and the workers' ports is tests/e2e/api/test_metrics.py."""

from __future__ import annotations

from tests.support.app import in_process_app


def test_the_metrics_token_opens_metrics_only(tmp_path) -> None:
    client, keys = in_process_app(tmp_path, metrics_token="scrape-token-0123456789")
    with client:
        bearer = {"authorization": "Bearer scrape-token-0123456789"}
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
