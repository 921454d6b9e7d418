"""The ModelsLab v6 inpaint and Stable Diffusion API enterprise routes keep those APIs' own contract,
in process (no worker: jobs stay queued and answer `processing` with their meta): their documented
ranges, integer ids, Idempotency-Key, every field they document, and errors in their field names.
POST /v2 keeps Segmind's ranges and strictness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.models import Job
from tests.support.app import in_process_app
from tests.support.http_server import Reply, ScriptedServer
from tests.support.images import box_mask, job_body, png_bytes, scene

V6 = "/api/v6/image_editing/inpaint"
ENTERPRISE = "/api/v1/enterprise/inpaint"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    client, keys = in_process_app(tmp_path, modelslab_wait_seconds=0, allow_loopback_urls=True)
    with client:
        yield client, keys


def body(keys: dict[str, str], **changes: Any) -> dict[str, Any]:
    """The Stable Diffusion API enterprise's documented example body (no model_id: the default model),
    with our key and inline images."""
    images = job_body()
    return {
        "key": keys["user"],
        "prompt": "a cat sitting on a bench",
        "negative_prompt": None,
        "init_image": images["image"],
        "mask_image": images["mask"],
        "width": "512",
        "height": "512",
        "samples": "1",
        "num_inference_steps": "30",
        "safety_checker": "no",
        "enhance_prompt": "yes",
        "guidance_scale": 7.5,
        "strength": 0.7,
        "scheduler": "PNDMScheduler",
        "seed": None,
        "webhook": None,
        "track_id": None,
        **changes,
    }


def job_count(tmp_path: Path) -> int:
    engine = make_engine(f"sqlite:///{tmp_path / 'inpaint.db'}")
    try:
        with session_scope(make_session_factory(engine)) as session:
            return int(session.execute(select(func.count()).select_from(Job)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("path", [V6, ENTERPRISE])
@pytest.mark.parametrize(
    ("changes", "meta"),
    [
        ({"num_inference_steps": "1", "strength": 1}, {"steps": 1}),
        ({"num_inference_steps": "10"}, {"steps": 10}),
        ({"steps": "50", "num_inference_steps": None}, {"steps": 50}),
        ({"width": "256", "height": "640"}, {"W": 256, "H": 640}),
        ({"width": 1024, "height": "1024"}, {"W": 1024, "H": 1024}),
        ({"width": "500"}, {"W": 496}),
        ({"strength": 0.05}, {"strength": 0.05}),
        ({"strength": 1}, {"strength": 1}),
        ({"guidance_scale": 20}, {"guidance_scale": 20}),
    ],
)
def test_the_documented_ranges_are_accepted(
    app: tuple[TestClient, dict[str, str]], path: str, changes: dict[str, Any], meta: dict[str, Any]
) -> None:
    """Stable Diffusion API enterprise: steps 1-50, width and height up to 1024, strength 0-1, guidance
    1-20; the default model (SD 1.5) runs them, a side that is no multiple of 8 floored to one."""
    client, keys = app
    answer = client.post(path, json=body(keys, **changes))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "processing"
    assert {name: answer.json()["meta"][name] for name in meta} == meta


@pytest.mark.parametrize(
    ("changes", "field", "limit"),
    [
        ({"num_inference_steps": "51"}, "num_inference_steps", "50"),
        ({"steps": "0", "num_inference_steps": None}, "steps", "1"),
        ({"width": "1032"}, "width", "1024"),
        ({"height": "1100"}, "height", "1024"),
        ({"guidance_scale": 21}, "guidance_scale", "20"),
        ({"strength": 0}, "strength", "at least"),  # the pipeline would run no denoising step
        ({"num_inference_steps": "1"}, "strength", "at least 1"),  # 1 step at strength 0.7: none
    ],
)
def test_values_out_of_the_documented_ranges_are_refused_by_name(
    app: tuple[TestClient, dict[str, str]], changes: dict[str, Any], field: str, limit: str
) -> None:
    """Stable Diffusion API enterprise field table: the 400 names the field as sent, the limit and the value."""
    client, keys = app
    answer = client.post(ENTERPRISE, json=body(keys, **changes))
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert message.startswith(f"{field}:") and limit in message, message
    if "at least" not in message:  # a range of the API's table: said to be the API's, not the model's
        assert "on the ModelsLab v6 inpaint / Stable Diffusion API enterprise routes" in message, message


def test_v2_keeps_segmind_ranges(app: tuple[TestClient, dict[str, str]]) -> None:
    """Segmind SD 1.5 inpainting: steps 20-100 and sizes 512 or 768 stay the rule on POST /v2."""
    client, keys = app
    headers = {"x-api-key": keys["user"]}
    steps = client.post("/v2/sd1.5-inpainting", json=job_body(num_inference_steps=10), headers=headers)
    assert steps.status_code == 400 and "num_inference_steps" in steps.text
    size = client.post("/v2/sd1.5-inpainting", json=job_body(img_width=640), headers=headers)
    assert size.status_code == 400 and "img_width" in size.text
    upscale = client.post("/v2/sd1.5-inpainting", json=job_body(upscale="no"), headers=headers)
    assert upscale.status_code == 400 and "upscale" in upscale.text


def test_ids_are_integers_and_fetch_takes_either_id(app: tuple[TestClient, dict[str, str]]) -> None:
    """ModelsLab v6 inpaint answers `"id": 12384052`, an integer; its fetch route takes it back. The
    modelslab-py SDK fetches from its API's base + fetch/{id}: image_editing/ or, through its community
    API, images/, under v6 or (enterprise mode) v1/enterprise."""
    client, keys = app
    first = client.post(V6, json=body(keys)).json()
    second = client.post("/api/v1/enterprise/image_editing/inpaint", json=body(keys)).json()
    assert isinstance(first["id"], int) and second["id"] == first["id"] + 1
    for path in ("/api/v6/images/inpaint", "/api/v1/enterprise/images/inpaint"):
        community = client.post(path, json=body(keys))
        assert community.status_code == 200 and isinstance(community.json()["id"], int), (path, community.text)
    assert first["fetch_result"].endswith(f"/api/v6/image_editing/fetch/{first['id']}")
    uuid = first["meta"]["file_prefix"]
    for path in (
        f"/api/v6/image_editing/fetch/{first['id']}",
        f"/api/v1/enterprise/fetch/{first['id']}",
        f"/api/v1/enterprise/image_editing/fetch/{first['id']}",
        f"/api/v6/images/fetch/{first['id']}",
        f"/api/v1/enterprise/images/fetch/{first['id']}",
        f"/api/v6/image_editing/fetch/{uuid}",
    ):
        fetched = client.post(path, json={"key": keys["user"]})
        assert fetched.status_code == 200, (path, fetched.text)
        assert fetched.json()["id"] == first["id"]
    by_body = client.post("/api/v1/enterprise/fetch_queue_image", json={"key": keys["user"], "request_id": first["id"]})
    assert by_body.json()["id"] == first["id"]
    other_key = client.post(f"/api/v6/image_editing/fetch/{first['id']}", json={"key": keys["admin"]})
    assert other_key.status_code == 404


def test_the_sdk_enterprise_management_paths_answer(app: tuple[TestClient, dict[str, str]]) -> None:
    """modelslab-py (enterprise=True) posts {key} to its API's base (image_editing/ or images/) +
    system_details / clear_cache; a user key is refused there as on the plain paths."""
    client, keys = app
    for base in ("image_editing", "images"):
        for name in ("system_details", "clear_cache"):
            answer = client.post(f"/api/v1/enterprise/{base}/{name}", json={"key": keys["admin"]})
            assert answer.status_code == 200 and answer.json()["status"] == "success", answer.text
        refused = client.post(f"/api/v1/enterprise/{base}/system_details", json={"key": keys["user"]})
        assert refused.status_code == 403, refused.text


def test_idempotency_key_makes_one_job(app: tuple[TestClient, dict[str, str]], tmp_path: Path) -> None:
    """ModelsLab v6 inpaint's example body sent twice with one Idempotency-Key: one job, one id."""
    client, keys = app
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post(V6, json=body(keys), headers=headers)
    again = client.post(V6, json=body(keys), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert job_count(tmp_path) == 1
    other = client.post(V6, json=body(keys, prompt="a dog"), headers=headers)
    assert other.status_code == 409 and other.json()["status"] == "error"
    assert job_count(tmp_path) == 1


def test_fields_of_their_other_endpoints_are_accepted_and_reported(app: tuple[TestClient, dict[str, str]]) -> None:
    """The Stable Diffusion API enterprise's result meta carries multi_lingual, upscale and full_url; ModelsLab's
    community inpaint takes panorama and self_attention. Accepted here, listed in meta.not_applied."""
    client, keys = app
    extra = {"multi_lingual": "no", "upscale": "no", "panorama": "no", "self_attention": "no", "full_url": "no"}
    extra |= {"tomesd": "yes", "loadbalancer": "no", "temp": "no"}
    answer = client.post(ENTERPRISE, json=body(keys, **extra, favourite_colour="blue"))
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["meta"]["not_applied"]) >= {*extra, "favourite_colour"}


def test_unknown_fields_are_refused_when_configured(tmp_path: Path) -> None:
    """INPAINT_MODELSLAB_UNKNOWN_FIELDS=reject: a field no API documents is a 400 naming it; documented
    ones (Stable Diffusion API enterprise's upscale) are still accepted."""
    client, keys = in_process_app(tmp_path, modelslab_wait_seconds=0, modelslab_unknown_fields="reject")
    with client:
        refused = client.post(V6, json=body(keys, favourite_colour="blue"))
        assert refused.status_code == 400 and refused.json()["message"].startswith("favourite_colour:")
        assert client.post(V6, json=body(keys, upscale="no")).status_code == 200


@pytest.mark.parametrize("missing", ["init_image", "mask_image"])
def test_missing_images_are_named_as_sent(app: tuple[TestClient, dict[str, str]], missing: str) -> None:
    """ModelsLab v6 inpaint's field table names init_image and mask_image; so do its errors here."""
    client, keys = app
    answer = client.post(V6, json={k: v for k, v in body(keys).items() if k != missing})
    assert answer.status_code == 400
    assert answer.json()["message"] == f"{missing}: is required"
    assert answer.json()["errors"][0]["field"] == missing


def test_meta_echoes_the_input_urls(app: tuple[TestClient, dict[str, str]], http_server: ScriptedServer) -> None:
    """ModelsLab v6 inpaint's example response: meta.init_image and meta.mask_image are the URLs sent."""
    client, keys = app
    http_server.routes["/in.png"] = Reply(200, png_bytes(scene()), {"content-type": "image/png"})
    http_server.routes["/mask.png"] = Reply(200, png_bytes(box_mask()), {"content-type": "image/png"})
    urls = {"init_image": f"{http_server.url}/in.png", "mask_image": f"{http_server.url}/mask.png"}
    answer = client.post(V6, json=body(keys, **urls))
    assert answer.status_code == 200, answer.text
    meta = answer.json()["meta"]
    assert (meta["init_image"], meta["mask_image"]) == (urls["init_image"], urls["mask_image"])
    broken = client.post(V6, json=body(keys, init_image=f"{http_server.url}/missing.png"))
    assert broken.status_code == 400 and broken.json()["message"].startswith("init_image: could not be fetched")
