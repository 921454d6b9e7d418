"""The OpenAPI document (api.openapi), from the app create_app builds: each family's body is described,
errors are documented with the statuses the API really answers, and keyed routes carry the schemes.

That every answer matches the document is checked by tests/api/test_schemathesis.py (generated
requests) and tests/api/test_schemas.py (real jobs in every state)."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from storage.settings import load_settings

ERROR_REF = "#/components/schemas/Error"
MODELSLAB_ROUTES = (
    "/api/v6/",
    "/api/v1/enterprise/inpaint",
    "/api/v1/enterprise/image_editing/inpaint",
    "/api/v1/enterprise/image_editing/fetch",
    "/api/v1/enterprise/images/inpaint",
    "/api/v1/enterprise/images/fetch",
    "/api/v1/enterprise/fetch",
)
NO_KEY = {("get", "/healthz"), ("get", "/readyz")}
FAILED_JOB_422 = {
    ("get", "/v2/requests/{job_id}/status"): "JobState",
    ("get", "/v2/requests/{job_id}"): "JobState",
    ("post", "/v1/{model}"): "SyncFailed",
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return create_app(load_settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def schema_of(response: dict[str, Any]) -> dict[str, Any]:
    return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def test_openapi_describes_each_family_body(document: dict[str, Any]) -> None:
    body = document["paths"]["/v2/{model}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    titles = [s["title"] for s in body["oneOf"]]
    assert titles == ["InpaintRequest", "DiffusionRequest", "SDXLRequest", "ControlNetRequest"]
    assert "cn_processor" in body["oneOf"][3]["properties"]
    assert "/api/v1/enterprise/load_model" in document["paths"]


def test_invalid_input_is_documented_as_400_never_as_fastapis_422(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Error"]["required"]) == {"error"}
    assert set(schemas["FieldError"]["required"]) == {"field", "message", "limit", "value"}
    for method, path, op in operations(document):
        assert "400" in op["responses"], (method, path)
        expected = "ModelsLabError" if path.startswith(MODELSLAB_ROUTES) else "Error"
        assert schema_of(op["responses"]["400"]) == {"$ref": f"#/components/schemas/{expected}"}, (method, path)


def test_only_a_failed_job_is_a_422(document: dict[str, Any]) -> None:
    """Segmind's queue answers 422 for a FAILED job; so do the ModelsLab routes, in their shape."""
    for method, path, op in operations(document):
        if "422" not in op["responses"]:
            continue
        expected = FAILED_JOB_422.get((method, path), "ModelsLabAnswer")
        assert schema_of(op["responses"]["422"]) == {"$ref": f"#/components/schemas/{expected}"}, (method, path)
    assert {(m, p) for m, p, op in operations(document) if "422" in op["responses"]} >= set(FAILED_JOB_422)


def test_keyed_routes_carry_the_key_schemes_and_their_401(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "Your API key."},
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Your API key as `Authorization: Bearer <key>`.",
        },
    }
    for method, path, op in operations(document):
        if (method, path) in NO_KEY:
            assert "security" not in op and "401" not in op["responses"]
            continue
        assert {"ApiKey": []} in op["security"], (method, path)
        assert "401" in op["responses"], (method, path)
        assert not any(p["in"] == "header" and p["name"].lower() == "x-api-key" for p in op.get("parameters", []))
    assert not any(path.startswith("/files/") or path.endswith("/images/{index}") for path in document["paths"])


def test_rate_limits_and_outages_say_when_to_retry(document: dict[str, Any]) -> None:
    """Admission control (429) spares the probes and /metrics; the database guard (503) spares /healthz."""
    for method, path, op in operations(document):
        responses = op["responses"]
        assert ("429" in responses) is (path not in ("/healthz", "/readyz", "/metrics")), (method, path)
        assert ("503" in responses) is (path != "/healthz"), (method, path)
        for status in {"429", "503"} & set(responses):
            assert "Retry-After" in responses[status]["headers"], (method, path, status)
    submit = document["paths"]["/v2/{model}"]["post"]["responses"]
    assert set(submit) == {"200", "400", "401", "403", "404", "406", "409", "413", "429", "503"}
    assert schema_of(submit["200"]) == {"$ref": "#/components/schemas/SubmitAnswer"}
    assert schema_of(submit["429"]) == {"$ref": ERROR_REF}


def test_the_body_key_of_the_stable_diffusion_api_routes_is_described(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        if path.startswith("/api/"):
            assert "`key`" in op["description"], (method, path)
    inpaint = document["paths"]["/api/v6/image_editing/inpaint"]["post"]
    assert {} in inpaint["security"], "the key may be in the body instead of a header"
    assert "key" in inpaint["requestBody"]["content"]["application/json"]["schema"]["properties"]
