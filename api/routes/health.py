"""Liveness and readiness. Neither needs a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.context import AppContext
from api.deps import ContextDep
from api.openapi import RETRY_AFTER
from api.schemas import Error, Liveness, Readiness
from api.serving import weights_source
from storage.blobs.store import disk_shortfall
from storage.database.assets import load_catalog
from storage.database.engine import session_scope
from storage.database.registry import find_model
from storage.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", summary="Liveness: the process answers", response_model=None, responses={200: {"model": Liveness}}
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def database_disk_check(context: AppContext) -> str:
    """ "ok", or why the embedded SQLite database cannot take writes: its disk is nearly full. A server
    database (PostgreSQL) watches its own disk."""
    database = context.engine.url.database
    if context.engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return "ok"
    short = disk_shortfall(Path(database).parent, context.settings.min_free_disk_mb * 2**20)
    return f"the database's disk is nearly full: {short}" if short else "ok"


@router.get(
    "/readyz",
    summary="Readiness: database, broker and storage are reachable; with ?model=, an online worker can serve it",
    responses={
        200: {"model": Readiness, "description": "Ready"},
        503: {
            "model": Readiness | Error,
            "description": "Not ready: `checks` names what is unreachable or, with ?model=, why no online "
            "worker can serve the model (an Error while the database guard holds requests back)",
            "headers": RETRY_AFTER,
        },
        404: {"model": Error, "description": "?model= names no registered model"},
    },
)
def readyz(context: ContextDep, model: str | None = None) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with context.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = database_disk_check(context)
    except Exception as exc:  # noqa: BLE001 - report, never raise
        checks["database"] = f"unreachable ({type(exc).__name__})"
    try:
        with context.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"unreachable ({type(exc).__name__})"
    try:
        context.blobs.check()
        checks["storage"] = "ok"
    except Unavailable as exc:  # reachable, but not usable: say why (not writable, disk nearly full)
        checks["storage"] = exc.message
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = f"unreachable ({type(exc).__name__})"
    if model is not None and checks["database"] == "ok":
        with session_scope(context.sessions) as session:
            spec = find_model(session, model)
            catalog = load_catalog(session)
        if spec is None:
            return JSONResponse({"error": f"unknown model {model!r}; GET /v2/models lists the models"}, 404)
        serving = context.serving.serving(spec, weights_source(spec, None, catalog))
        checks["model"] = "ok" if serving.servable else f"cannot be served: {serving.reason or serving.state}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "5"},
    )
