"""The OpenAPI document, from the app create_app builds: each family's body is described."""

from __future__ import annotations


def test_openapi_describes_each_family_body() -> None:
    from api.app import create_app
    from storage.settings import load_settings

    schema = create_app(load_settings(data_dir="/tmp/iq-openapi")).openapi()
    body = schema["paths"]["/v2/{model}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    titles = [s["title"] for s in body["oneOf"]]
    assert titles == ["InpaintRequest", "DiffusionRequest", "SDXLRequest", "ControlNetRequest"]
    assert "cn_processor" in body["oneOf"][3]["properties"]
    assert "/api/v1/enterprise/load_model" in schema["paths"]
