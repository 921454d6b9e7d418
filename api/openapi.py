"""The OpenAPI document (/openapi.json): what the routes declare, made true where FastAPI's defaults are not.

- FastAPI documents a 422 validation error on every route with parameters or a body;
  this API answers those with 400 and an `Error` body (api.errors). Each such 422
  becomes a 400 here. A 422 a route declares itself (a FAILED job) stays.
- Any route answers 400 to a NUL character in its URL or a header, and any POST
  route to a body that is not strict JSON (api.edge.gate); any POST answers 413 to
  a body over the limit (api.edge.body_limit).
- A route that needs a key (api.deps puts the ApiKey and Bearer schemes on it)
  answers 401 without one.
- Admission control answers 429 on any route but the probes and /metrics
  (api.edge.admission); the database guard 503 on any but /healthz
  (api.edge.database_guard). Both say when to retry.

Routes declare their other errors with `error_responses(...)`, which gives each
status its usual meaning; tests/api/test_schemathesis.py checks that every answer
is documented and matches its schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from api.edge.admission import UNLIMITED_PATHS
from api.edge.database_guard import UNGUARDED_PATHS
from api.schemas import Error, ModelsLabAnswer, ModelsLabBody, ModelsLabError

RETRY_AFTER = {
    "Retry-After": {"description": "Whole seconds to wait before trying again.", "schema": {"type": "integer"}}
}
MEANINGS: dict[int, str] = {
    400: "Invalid input: `errors` names each field, its limit and the given value (`body`, `path`, `query` "
    "or a header for input no route could use)",
    401: "Missing, unknown or revoked API key",
    403: "The key may not do this: use this model, or an admin route",
    404: "Not found, or expired",
    406: "This key is out of credits (one per image)",
    409: "Idempotency-Key reused with another body within 24 h",
    413: "The body is over INPAINT_MAX_BODY_BYTES",
    429: "Rate limited, or too many requests in progress: retry after Retry-After seconds",
    503: "The database (or object storage) is not answering right now; nothing was stored, try again",
}
MODELSLAB_KEY_NOTE = (
    "As the Stable Diffusion API sends it, the key goes in the JSON body's `key`; the x-api-key header "
    "works too. Answers and errors have that API's shape: `{status, message, ...}`."
)
VALIDATION_ERROR_REF = "#/components/schemas/HTTPValidationError"


def error_response(
    status: int, description: str | None = None, *, model: Any = Error, retry_after: bool = True
) -> dict[str, Any]:
    """One `responses=` entry: the error body, the usual meaning (or `description`), Retry-After on 429/503."""
    entry: dict[str, Any] = {"model": model, "description": description or MEANINGS[status]}
    if retry_after and status in (429, 503):
        entry["headers"] = RETRY_AFTER
    return entry


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses, each with its usual meaning and the Error body."""
    return {status: error_response(status) for status in statuses}


def modelslab_docs(body: type[BaseModel]) -> dict[str, Any]:
    """add_api_route() keywords of a ModelsLab / Stable Diffusion API route, which reads its own body:
    the body's schema, the key (in the body or x-api-key) and the answers in that API's shape."""
    statuses = (400, 401, 403, 404, 406, 429) if body is ModelsLabBody else (400, 401, 404, 429)
    schema = body.model_json_schema()
    return {
        "description": MODELSLAB_KEY_NOTE,
        "responses": {
            200: {"model": ModelsLabAnswer, "description": "`success`, or `processing` with fetch_result"},
            **{status: error_response(status, model=ModelsLabError) for status in statuses},
            413: error_response(413),
            422: {"model": ModelsLabAnswer, "description": "The job FAILED: `status: error` with message"},
            503: error_response(503, model=ModelsLabError | Error),
        },
        "openapi_extra": {
            "requestBody": {"required": False, "content": {"application/json": {"schema": schema}}},
            "security": [{"ApiKey": []}, {}],  # {}: or no header, with `key` in the body
        },
    }


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document: FastAPI builds it once, `complete_document` finishes it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """400 instead of FastAPI's 422, and the errors every route of a kind answers, with the Error schema (in place)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            if _is_fastapi_validation_error(responses.get("422")):
                del responses["422"]
            for status in errors_of(path, method, keyed=bool(operation.get("security"))):
                responses.setdefault(str(status), _error_object(status))
            operation["responses"] = dict(sorted(responses.items()))
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _add_error_schema(schemas)
    return document


def errors_of(path: str, method: str, *, keyed: bool) -> list[int]:
    """The error statuses a route answers whatever it does (a route declares its own as well)."""
    return [
        400,
        *([401] if keyed else []),
        *([413] if method == "post" else []),
        *([429] if path not in UNLIMITED_PATHS else []),
        *([503] if path not in UNGUARDED_PATHS else []),
    ]


def _is_fastapi_validation_error(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == VALIDATION_ERROR_REF)


def _error_object(status: int) -> dict[str, Any]:
    entry = error_response(status)
    del entry["model"]
    return entry | {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _add_error_schema(schemas: dict[str, Any]) -> None:
    """Error and FieldError in components, as pydantic describes them, unless a route already put them there."""
    schema = Error.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault("Error", schema)
