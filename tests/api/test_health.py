"""GET /healthz and /readyz in process: readiness names what is unreachable (api.routes.health)."""

from __future__ import annotations

import shutil
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
    assert "reachable (" in checks[broken], checks  # "unreachable (...)" or, storage, "... not reachable (...)"
    assert {name for name, state in checks.items() if state == "ok"} == {"database", "broker", "storage"} - {broken}


def test_readyz_fails_naming_the_disk_when_free_space_is_under_the_minimum(tmp_path) -> None:
    """A disk with less free space than INPAINT_MIN_FREE_DISK_MB is not ready, whatever its permissions:
    the image directory and the SQLite database's disk are each named, with the free space and the limit."""
    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    client, _ = in_process_app(tmp_path, min_free_disk_mb=free_mb + 10_000)
    with client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
    checks = response.json()["checks"]
    for name, disk in (("storage", "image directory"), ("database", "database")):
        assert checks[name].startswith(f"the {disk}'s disk is nearly full:"), checks
        assert f"under the {free_mb + 10_000} MB minimum (INPAINT_MIN_FREE_DISK_MB)" in checks[name], checks
    client, _ = in_process_app(tmp_path / "roomy", min_free_disk_mb=1)
    with client:
        assert client.get("/readyz").json()["checks"]["storage"] == "ok"
