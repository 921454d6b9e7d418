"""The app as create_app builds it, in process on a real database: what it must never give away
(its internals in error bodies, its API to other origins: CORS stays off unless origins are
configured), and the key it creates from configuration.

What a running stack must never give away (keys in its logs or its database) is
tests/e2e/api/test_exposure.py; the keys' command line is tests/e2e/admin/test_keys_cli.py."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.migrate import upgrade
from storage.database.models import RegisteredModel
from storage.settings import load_settings
from tests.support.app import in_process_app
from tests.support.images import job_body


def test_cors_is_off_unless_origins_are_configured(tmp_path) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    client, keys = in_process_app(tmp_path / "off")
    with client:
        assert "access-control-allow-origin" not in client.options("/v2/erase", headers=preflight).headers
        user = {"x-api-key": keys["user"]}
        answer = client.get("/v2/models", headers={"Origin": "https://evil.example", **user})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers

    client, keys = in_process_app(tmp_path / "on", cors_origins="https://app.example, https://b.example")
    with client:
        allowed = client.options("/v2/erase", headers={**preflight, "Origin": "https://app.example"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options("/v2/erase", headers=preflight)
        assert "access-control-allow-origin" not in refused.headers
        answer = client.get("/v2/models", headers={"Origin": "https://b.example", "x-api-key": keys["user"]})
        assert answer.headers["access-control-allow-origin"] == "https://b.example"


def test_an_internal_error_shows_neither_traceback_nor_values(tmp_path) -> None:
    """A registry row that no longer validates: the error names the row's values and a path."""
    client, keys = in_process_app(tmp_path)
    engine = make_engine(load_settings(data_dir=tmp_path).resolved_database_url)
    with session_scope(make_session_factory(engine)) as session:
        session.add(
            RegisteredModel(
                slug="broken",
                family="sd15",
                source="/srv/internal/weights",
                options={"max_side": "/srv/internal/not-a-number"},
                created_at=utcnow(),
            )
        )
    engine.dispose()
    with client:
        response = client.post("/v2/broken", json=job_body(), headers={"x-api-key": keys["user"]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server log has the details"}


def test_a_storage_fault_shows_neither_traceback_nor_path(tmp_path) -> None:
    """The image directory is broken after start-up: storing the inputs fails inside the server."""
    client, keys = in_process_app(tmp_path)
    with client:
        (tmp_path / "blobs" / "jobs").write_text("not a directory")
        response = client.post("/v2/erase", json=job_body(), headers={"x-api-key": keys["user"]})
    assert response.status_code in (500, 503), response.text
    assert list(response.json()) == ["error"]
    for leak in (str(tmp_path), "Traceback", "Errno", "NotADirectoryError", "FileExistsError"):
        assert leak not in response.text


def test_a_database_error_does_not_reveal_its_address(tmp_path) -> None:
    """The database is a PostgreSQL server that is not there: the driver's message names its address."""
    broken = load_settings(data_dir=tmp_path, database_url="postgresql+psycopg://iq@127.0.0.1:9/inpaint")
    with TestClient(create_app(broken), raise_server_exceptions=False) as client:
        response = client.get("/v2/models", headers={"x-api-key": "iq_anything"})
    assert response.status_code in (500, 503), response.text
    for leak in ("127.0.0.1", ":9", "psycopg", "Traceback", "connection"):
        assert leak not in response.text, f"{leak!r} in {response.text}"


def test_bootstrap_key_from_configuration(tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path, bootstrap_api_key="iq_bootstrap-key-for-the-test")
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/models", headers={"x-api-key": "iq_bootstrap-key-for-the-test"}).status_code == 200
        assert client.get("/v2/models", headers={"x-api-key": "iq_other"}).status_code == 401
    with TestClient(create_app(settings)) as client:  # a second start finds it and does not fail
        assert client.get("/v2/models", headers={"x-api-key": "iq_bootstrap-key-for-the-test"}).status_code == 200
