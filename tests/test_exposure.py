"""What the service must never give away: keys (in logs or the database), its internals (in error
bodies), or its API to other origins (CORS stays off unless origins are configured)."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.models import RegisteredModel
from storage.settings import load_settings
from tests.support.db import stack_session
from tests.support.images import job_body
from tests.support.stack import Stack
from tests.test_access import in_process_app

BOGUS_KEY = "iq_this-key-does-not-exist-0123456789abcdef"


def exercise_keys(stack: Stack) -> None:
    """Use every key every way the API takes one, the unknown one included."""
    for key in (stack.user_key, stack.admin_key, BOGUS_KEY):
        for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
            httpx.get(f"{stack.base_url}/v2/models", headers=headers)
            httpx.post(f"{stack.base_url}/v2/erase", headers=headers, json=job_body(prompt="x" * 5000))
            httpx.get(f"{stack.base_url}/v2/requests/nope/status", headers=headers)
    job_id = stack.submit("erase", job_body())
    stack.wait(job_id)
    stack.cli("inpaint-admin", "keys", "list")


def test_keys_are_never_logged_or_stored_in_plain_text(stack: Stack) -> None:
    exercise_keys(stack)
    secrets = [stack.user_key, stack.admin_key, BOGUS_KEY]
    logs = sorted(stack.workdir.glob("*.log"))
    assert {p.stem for p in logs} >= {"api", "worker", "ops", "beat"}, logs
    for path in logs:
        content = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in content and secret[3:] not in content, f"a key is in {path.name}"
    stored = stored_bytes(stack)
    for secret in secrets:
        assert secret.encode() not in stored, "a key is stored in plain text"
        assert secret[3:].encode() not in stored


def stored_bytes(stack: Stack) -> bytes:
    """Everything the stack keeps: the files of the data dir, and for PostgreSQL every api_keys row."""
    files = b"".join(p.read_bytes() for p in Path(stack.env["INPAINT_DATA_DIR"]).rglob("*") if p.is_file())
    if "INPAINT_DATABASE_URL" not in stack.env:
        assert b"SQLite format 3" in files, "the embedded database was not searched"
        return files
    with stack_session(stack) as session:
        rows = session.execute(text("SELECT * FROM api_keys")).all()
    assert rows
    return files + repr(rows).encode()


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
