"""load_model with single-file checkpoints, in process on the real app and a real database: what is
registered, and what is refused with a 400 naming the field before anything is stored or fetched.

The rest of model management, over HTTP against running workers, is tests/e2e/api/test_admin.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.app import in_process_app

SHA = "5f" * 32
PUBLIC = "93.184.216.34"
"""A public address, written as one: registration resolves a URL's host (no DNS needed here) but never connects."""


def load_model(client: Any, key: str, **body: Any) -> httpx.Response:
    response: httpx.Response = client.post("/api/v1/enterprise/load_model", json={"key": key, **body})
    return response


def registered(client: Any, key: str, name: str) -> dict[str, Any]:
    listing = client.post("/api/v1/enterprise/get_all_models", json={"key": key}).json()
    return next(
        entry for entry in listing["models"] + listing["assets"] if name in (entry.get("slug"), entry.get("name"))
    )


def test_a_safetensors_file_or_url_registers_with_its_sha256_and_config(tmp_path: Path) -> None:
    client, keys = in_process_app(tmp_path)
    with client:
        local = load_model(
            client,
            keys["admin"],
            model_id="dreamshaper",
            url="/models/dreamshaper_8.safetensors",
            config="/models/sd15",
        )
        assert local.status_code == 200, local.text
        entry = registered(client, keys["admin"], "dreamshaper")
        assert (entry["source"], entry["config"], entry["sha256"]) == (
            "/models/dreamshaper_8.safetensors",
            "/models/sd15",
            None,
        )
        base = load_model(
            client,
            keys["admin"],
            model_id="Juggernaut XL",
            model_type="base_model",
            url=f"https://{PUBLIC}/api/download/models/456194",
            sha256=SHA,
            family="sdxl",
        )
        assert base.status_code == 200, base.text
        assert registered(client, keys["admin"], "Juggernaut XL")["sha256"] == SHA


def test_a_pickled_checkpoint_is_refused_unless_the_operator_allows_it(tmp_path: Path) -> None:
    for allowed, status in ((False, 400), (True, 200)):
        client, keys = in_process_app(tmp_path / str(allowed), allow_pickle_checkpoints=allowed)
        with client:
            for url in ("/models/v1-5-pruned.ckpt", f"https://{PUBLIC}/files/model.pt"):
                response = load_model(client, keys["admin"], model_id="old", url=url, model_type="sdxl")
                assert response.status_code == status, response.text
        if not allowed:
            error = response.json()
            assert error["errors"][0]["field"] == "url"
            assert error["error"].startswith("url: is a pickled checkpoint (.pt), which can run code when it is loaded")
            assert "INPAINT_ALLOW_PICKLE_CHECKPOINTS" in error["error"]


def test_a_loopback_or_private_url_is_refused_unless_loopback_is_allowed(tmp_path: Path, http_server) -> None:
    url = f"{http_server.url}/model.safetensors"
    client, keys = in_process_app(tmp_path / "strict", allow_loopback_urls=False)
    with client:
        for refused in (url, "http://10.0.0.8/model.safetensors", "http://localhost/model.safetensors"):
            response = load_model(client, keys["admin"], model_id="local", url=refused)
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "url: the host resolves to an address that is not public"
        assert load_model(client, keys["admin"], model_id="m", url="ftp://h/m.safetensors").status_code == 200, (
            "not a URL, so a hub id: diffusers' business"
        )
    client, keys = in_process_app(tmp_path / "loopback", allow_loopback_urls=True)
    with client:
        assert load_model(client, keys["admin"], model_id="local", url=url).status_code == 200
    assert http_server.connections == 0, "the API fetched the checkpoint"


def test_checkpoint_fields_must_fit_the_source_and_kind(tmp_path: Path) -> None:
    client, keys = in_process_app(tmp_path)
    with client:
        cases = [
            ({"url": "org/repo", "sha256": SHA}, "sha256: describes a single-file checkpoint"),
            ({"url": "/m/x.safetensors", "sha256": "12ab"}, "sha256: String should match pattern"),
            ({"url": "/m/x.safetensors", "config": "org/cfg", "model_type": "vae"}, "config: applies to models"),
            (
                {"url": "https://h.example/lora.safetensors", "model_type": "lora"},
                "url: a lora is loaded from a hub id",
            ),
        ]
        for body, message in cases:
            response = load_model(client, keys["admin"], model_id="m", **body)
            assert response.status_code == 400 and response.json()["error"].startswith(message), response.text
        vae = client.post(
            "/api/v1/enterprise/load_vae",
            json={"key": keys["admin"], "vae_id": "v", "vae_url": "https://h.example/vae.safetensors"},
        )
        assert vae.status_code == 400 and vae.json()["errors"][0]["field"] == "vae_url"
