"""Liveness and readiness. Neither needs a key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ContextDep
from api.openapi import RETRY_AFTER
from api.schemas import Error, Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", summary="Liveness: the process answers", response_model=None, responses={200: {"model": Liveness}}
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database, broker and storage are reachable",
    responses={
        200: {"model": Readiness, "description": "Ready"},
        503: {
            "model": Readiness | Error,
            "description": "Not ready: `checks` names what is unreachable (an Error while the database "
            "guard holds requests back)",
            "headers": RETRY_AFTER,
        },
    },
)
def readyz(context: ContextDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with context.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
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
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = f"unreachable ({type(exc).__name__})"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "5"},
    )
