"""/openapi.json tells the truth: schemathesis generates requests from it, valid and invalid, sends
them to the real app in process (on SQLite, with an admin key), and checks every answer: never a
5xx, its status documented for its route, its body and content type as documented there.

The budget is fixed and the run reproducible: a fixed seed and no example database; the fuzzing
phase sends MAX_EXAMPLES requests per route and mode, the coverage phase one per boundary of each
field (most of the run; some 2,000 requests in all). No worker runs, so jobs stay QUEUED; the
bodies of the other states are checked in tests/api/test_schemas.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from tests.support.app import app_with_keys

SEED = 20251127
MAX_EXAMPLES = 8
SAME_BODY_AS_ANOTHER = ("/v1/{model}", "/api/v1/enterprise/inpaint", "/api/v1/enterprise/image_editing/inpaint")
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")


def run_config(admin_key: str) -> dict[str, Any]:
    return {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "auth": {"openapi": {"ApiKey": {"api_key": admin_key}}},
        "request-timeout": 10,
        # The same handler under other paths: its coverage phase (every boundary of every field) runs once.
        "operations": [{"include-path": list(SAME_BODY_AS_ANOTHER), "phases": {"coverage": {"enabled": False}}}],
    }


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    # No worker runs: the v1 and ModelsLab routes must not wait for one.
    app, keys = app_with_keys(
        tmp_path_factory.mktemp("schemathesis"),
        sync_wait_seconds=0.1,
        modelslab_wait_seconds=0,
        fetch_timeout_seconds=1,
    )
    config = SchemathesisConfig.from_dict(run_config(keys["admin"]))
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    asgi.shutdown_lifespans()  # from_asgi started the app's lifespan and keeps it for the process


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the test after each route through `node._nodeid`, gone in pytest 9.2."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_answer_is_documented(case: schemathesis.Case[Any]) -> None:
    with_fresh_idempotency_key(case)
    case.call_and_validate()


SENT = itertools.count()
MAX_IDEMPOTENCY_KEY = 255


def with_fresh_idempotency_key(case: schemathesis.Case[Any]) -> None:
    """A generated Idempotency-Key is made unique, staying valid or too long as generated: one key
    reused with every generated body would turn each later submit into a 409, reaching nothing behind it."""
    key = case.headers.get("Idempotency-Key") if case.headers else None
    if case.headers and isinstance(key, str) and 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        suffix = f"-{next(SENT)}"
        case.headers["Idempotency-Key"] = key[: MAX_IDEMPOTENCY_KEY - len(suffix)] + suffix
