"""The one place where domain errors become HTTP responses.

Every error body has `error`, a sentence a person can act on. Validation errors
also carry `errors`: one entry per field with `field`, `message`, `limit` and
`value`. Nothing here ever echoes a traceback or an internal address.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.edge.answer import DATABASE_UNAVAILABLE
from api.edge.database_guard import RETRY_AFTER_SECONDS
from storage.errors import (
    Conflict,
    Forbidden,
    InpaintError,
    InvalidInput,
    NotFound,
    OutOfCredits,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: list[tuple[type[InpaintError], int]] = [
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (OutOfCredits, 406),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (Unavailable, 503),
]

VALUE_PREVIEW_CHARS = 60


def preview(value: Any) -> Any:
    """The given value as it may be shown back: long strings (base64 images) are cut."""
    if isinstance(value, str) and len(value) > VALUE_PREVIEW_CHARS:
        return value[:VALUE_PREVIEW_CHARS] + f"... ({len(value)} characters)"
    if isinstance(value, dict | list):
        return f"<{type(value).__name__}>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return repr(value)[:VALUE_PREVIEW_CHARS]


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation_error(err: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as {field, message, limit, value}."""
    field = _field_name(tuple(err.get("loc", ())))
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    given = preview(err.get("input"))
    limit: Any = None
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = ctx.get("reason") or "is not a field this endpoint accepts"
    elif kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt"))
        message = (
            f"must be at most {limit}, got {given}"
            if kind == "less_than_equal"
            else f"must be less than {limit}, got {given}"
        )
    elif kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt"))
        message = (
            f"must be at least {limit}, got {given}"
            if kind == "greater_than_equal"
            else f"must be greater than {limit}, got {given}"
        )
    elif kind == "string_too_short":
        limit = ctx.get("min_length")
        message = "must not be empty" if limit == 1 else f"must be at least {limit} characters"
    elif kind == "string_too_long":
        limit = ctx.get("max_length")
        length = len(err["input"]) if isinstance(err.get("input"), str) else "?"
        message = f"must be at most {limit} characters, got {length}"
    elif kind == "json_invalid":
        message = f"the body is not valid JSON ({ctx.get('error', 'parse error')})"
    else:
        message = f"{err.get('msg', 'is invalid')}, got {given!r}"
    return {"field": field, "message": f"{field}: {message}", "limit": limit, "value": given}


def _error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, **extra}, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [describe_validation_error(e) for e in exc.errors()]
        return _error_response(400, "; ".join(e["message"] for e in errors), errors=errors)

    @app.exception_handler(InvalidInput)
    async def on_invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        entry = {"field": exc.field, "message": exc.message, "limit": exc.limit, "value": preview(exc.value)}
        return _error_response(400, exc.message, errors=[entry])

    @app.exception_handler(RateLimited)
    async def on_rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        seconds = max(1, math.ceil(exc.retry_after))
        response = _error_response(429, exc.message, retry_after=seconds)
        response.headers["Retry-After"] = str(seconds)
        return response

    @app.exception_handler(InpaintError)
    async def on_domain_error(_: Request, exc: InpaintError) -> JSONResponse:
        for kind, status in STATUS_BY_ERROR:
            if isinstance(exc, kind):
                headers = {"Retry-After": "5"} if status == 503 else None
                return _error_response(status, exc.message, headers=headers)
        log.error("unmapped domain error %s: %s", type(exc).__name__, exc.message)
        return _error_response(500, "internal error")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)

    @app.exception_handler(DataError)
    async def on_bad_data(request: Request, exc: DataError) -> JSONResponse:
        # A value the database refused is bad input that got past the edge: a bug to fix there, never an outage.
        log.error("the database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return _error_response(400, "a value in the request is not valid for this field")

    @app.exception_handler(SQLAlchemyError)
    async def on_database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return _error_response(503, DATABASE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error_response(500, "internal error; the server log has the details")
