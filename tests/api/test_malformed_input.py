"""Hostile bodies and URLs, in process, on SQLite and on PostgreSQL: every one is a 400 that names the
problem, on every route that takes a body, whatever the Content-Type, and nothing is queued for it.

Before the input gate (api/edge/gate.py) these were 500s (non-JSON bodies on model routes, NaN,
deep nesting, lone surrogates) or 503 "database unavailable" (a NUL in an id or a cursor on
PostgreSQL): bad input reported as an outage."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.models import Job
from tests.support.app import in_process_app
from tests.support.images import job_body
from tests.support.services import new_postgres_database

ROUTES = [
    "/v2/erase",
    "/v1/erase",
    "/v2/batch",
    "/api/v1/enterprise/load_model",
    "/api/v1/enterprise/get_all_models",
    "/api/v6/image_editing/inpaint",
    "/v2/webhook-secret/rotate",
]
MODELSLAB = "/api/v6/image_editing/inpaint"

# (name, raw body, content type): each must be refused as it is, on every route above.
HOSTILE_BODIES: list[tuple[str, bytes, str | None]] = [
    ("plain text", b"hello there", "text/plain"),
    ("form", b"prompt=a+cat&model=erase", "application/x-www-form-urlencoded"),
    (
        # On /v2/{model} and /v1/{model} a form is parsed (tests/api/edge/test_multipart.py): this one lacks
        # the required fields, a 400 naming `prompt`. Every other route refuses multipart as not JSON.
        "multipart",
        b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
    ),
    ("no content type", b"not json", None),
    ("not utf-8", b'{"prompt": "\xff\xfe"}', "application/json"),
    ("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ("nested 40 deep", b'{"prompt": ' + b"[" * 40 + b"]" * 40 + b"}", "application/json"),
    ("NaN", b'{"prompt": "a", "guidance_scale": NaN}', "application/json"),
    ("Infinity", b'{"prompt": "a", "guidance_scale": -Infinity}', "application/json"),
    ("1e400", b'{"prompt": "a", "guidance_scale": 1e400}', "application/json"),
    ("huge integer", b'{"prompt": "a", "seed": 1' + b"0" * 40 + b"}", "application/json"),
    ("lone surrogate", b'{"prompt": "a \\ud800 b"}', "application/json"),
    ("lone surrogate in a key", b'{"\\udc01": 1}', "application/json"),
    ("NUL in a value", b'{"prompt": "a\\u0000b", "model_id": "x\\u0000"}', "application/json"),
    ("NUL in a key", b'{"a\\u0000": 1}', "application/json"),
]


@pytest.fixture(params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, services: dict[str, str]
) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    settings: dict[str, Any] = {}
    if request.param == "postgres":
        settings["database_url"] = new_postgres_database(services["INPAINT_TEST_POSTGRES_URL"])
    client, keys = in_process_app(tmp_path, **settings)
    with client:
        yield client, keys, client.app.state.context.settings.resolved_database_url  # type: ignore[attr-defined]


def count_jobs(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return int(session.execute(select(func.count()).select_from(Job)).scalar_one())
    finally:
        engine.dispose()


def message_of(route: str, answer: dict[str, Any]) -> str:
    if route == MODELSLAB:
        assert answer["status"] == "error", answer
        return str(answer["message"])
    return str(answer["error"])


@pytest.mark.parametrize("route", ROUTES)
def test_every_hostile_body_is_a_400_naming_the_problem(
    app: tuple[TestClient, dict[str, str], str], route: str
) -> None:
    client, keys, url = app
    before = count_jobs(url)
    for name, raw, content_type in HOSTILE_BODIES:
        headers = {"x-api-key": keys["admin"]}
        if content_type is not None:
            headers["content-type"] = content_type
        response = client.post(route, content=raw, headers=headers)
        assert response.status_code == 400, (name, response.status_code, response.text[:300])
        message = message_of(route, response.json())
        assert message.startswith(("body", "prompt", "guidance_scale", "model_id", "\\udc01", "a\\u0000")), (
            name,
            message,
        )
        assert len(message) > 20, (name, message)
    assert count_jobs(url) == before, "a refused request was queued"


def test_messages_say_what_is_wrong(app: tuple[TestClient, dict[str, str], str]) -> None:
    client, keys, _ = app
    expected = {
        "plain text": "text/plain",
        "nested 100000 deep": "nested more than 32 deep",
        "NaN": "NaN",
        "1e400": "1e400",
        "lone surrogate": "\\ud800",
        "NUL in a value": "NUL",
    }
    bodies = {name: (raw, content_type) for name, raw, content_type in HOSTILE_BODIES}
    for name, words in expected.items():
        raw, content_type = bodies[name]
        response = client.post(
            "/v2/erase", content=raw, headers={"x-api-key": keys["user"], "content-type": content_type or ""}
        )
        assert words in response.json()["error"], (name, response.json())
    answer = client.post("/v2/erase", content=bodies["lone surrogate"][0], headers={"x-api-key": keys["user"]}).json()
    assert answer["errors"][0]["field"] == "prompt", answer


def test_json_without_a_json_content_type_is_still_served(app: tuple[TestClient, dict[str, str], str]) -> None:
    """Every body route takes JSON: clients that forget the header (curl -d) get the same answer."""
    client, keys, _ = app
    body = json.dumps({"requests": [{"model": "erase", **job_body()}]}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"x-api-key": keys["user"], **({"content-type": content_type} if content_type else {})}
        response = client.post("/v2/batch", content=body, headers=headers)
        assert response.status_code == 200, (content_type, response.text[:300])
        assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/v2/requests/%00abc/status",
        "/v2/requests/abc%00/events",
        "/v2/erase%00",
        "/v2/batch/%00",
        "/v2/requests?cursor=%00",
        "/api/v6/image_editing/fetch/%00",
    ],
)
def test_a_nul_in_the_url_is_a_400_not_an_outage(app: tuple[TestClient, dict[str, str], str], path: str) -> None:
    client, keys, _ = app
    method = client.post if path.startswith(("/v2/erase", "/api/v6")) else client.get
    response = method(path, headers={"x-api-key": keys["user"]})
    assert response.status_code == 400, (path, response.status_code, response.text[:300])
    assert "NUL" in (response.json().get("error") or response.json().get("message")), response.json()


def crafted_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        crafted_cursor(["2026-01-01T00:00:00+00:00", "a\u0000b"]),
        crafted_cursor(["2026-01-01T00:00:00+00:00", "\ud800"]),
        crafted_cursor(["2026-01-01T00:00:00+00:00", 7]),
        crafted_cursor(["0001-01-01T00:00:00+14:00", "abc"]),
        crafted_cursor(["not a date", "abc"]),
        crafted_cursor({"a": 1}),
        "%%%",
        "é",
    ],
)
def test_a_crafted_cursor_is_a_400(app: tuple[TestClient, dict[str, str], str], cursor: str) -> None:
    client, keys, _ = app
    response = client.get("/v2/requests", params={"cursor": cursor}, headers={"x-api-key": keys["user"]})
    assert response.status_code == 400, (cursor, response.status_code, response.text[:300])
    assert response.json()["error"].startswith("cursor"), response.json()


def test_a_real_cursor_still_pages(app: tuple[TestClient, dict[str, str], str]) -> None:
    client, keys, _ = app
    headers = {"x-api-key": keys["user"]}
    made = [client.post("/v2/erase", json=job_body(), headers=headers).json()["request_id"] for _ in range(3)]
    first = client.get("/v2/requests", params={"limit": 2}, headers=headers).json()
    second = client.get("/v2/requests", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers).json()
    seen = [r["request_id"] for r in first["requests"] + second["requests"]]
    assert sorted(seen) == sorted(made)
