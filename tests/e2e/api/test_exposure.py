"""What the service must never give away: keys (in logs or the database), its internals (in error
bodies), or its API to other origins (CORS stays off unless origins are configured).

Here, on running stacks: keys in the logs or the database. The in-process rest (error bodies,
CORS) is tests/api/test_app.py."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import text

from tests.support.db import stack_session
from tests.support.images import job_body
from tests.support.stack import Stack

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
