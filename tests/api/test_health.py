"""GET /healthz and /readyz in process: readiness names what is unreachable (api.routes.health)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.app import in_process_app


@pytest.mark.parametrize("broken", ["broker", "storage"])
def test_readyz_names_what_is_unreachable(tmp_path, broken: str) -> None:
    settings: dict[str, Any] = {  # port 9 (discard) has no listener on loopback
        "broker": {"broker_url": "redis://127.0.0.1:9/0"},
        "storage": {
            "storage_backend": "s3",
            "s3_endpoint_url": "http://127.0.0.1:9",
            "s3_access_key_id": "x",
            "s3_secret_access_key": "y",
        },
    }[broken]
    client, _ = in_process_app(tmp_path, **settings)
    with client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks[broken].startswith("unreachable"), checks
    assert {name for name, state in checks.items() if state == "ok"} == {"database", "broker", "storage"} - {broken}
