"""The ModelsLab / Stable Diffusion API routes, driven with those APIs' own documented example bodies.

ModelsLab v6 inpaint (`image_editing/inpaint`) and the Stable Diffusion API enterprise `inpaint`
are posted as printed, with only the key, the image URLs (our loopback server) and
`model_id` changed: `model_id` names a tiny SD 1.5 pipeline registered through
the enterprise API's own `load_model`. One more change: `width`/`height` are "64", not "512". The
tiny pipeline's VAE only halves the size, so at 512 its attention runs over 128×128
positions and one job takes minutes on a shared CPU; the 512 path itself (numbers sent as
strings, sizes checked against the model) is the same code.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from storage.contract.resolve import PROMPT_SUFFIX
from tests.support.http_server import Reply, ScriptedServer
from tests.support.images import box_mask, decode, png_bytes, scene
from tests.support.stack import Stack
from tests.support.waiting import wait_until

SIZE = (64, 64)
SIDE = str(SIZE[0])
MODEL = "tiny-ml-sd15"
V6 = "/api/v6/image_editing/inpaint"
ENTERPRISE = "/api/v1/enterprise/inpaint"

# ModelsLab v6 inpaint's documented "Example / Body", verbatim but for the key, the image URLs and model_id.
SEED_004: dict[str, Any] = {
    "key": "",
    "prompt": "a cat sitting on a bench",
    "negative_prompt": None,
    "init_image": "",
    "mask_image": "",
    "width": SIDE,
    "height": SIDE,
    "samples": 1,
    "num_inference_steps": "30",
    "safety_checker": "no",
    "enhance_prompt": "yes",
    "guidance_scale": 5,
    "strength": 0.7,
    "base64": False,
    "seed": None,
    "webhook": None,
    "track_id": None,
}
# The Stable Diffusion API enterprise's JavaScript example (it spells the steps `steps`), changed likewise.
SEED_002: dict[str, Any] = {
    "key": "",
    "model_id": "your_model_id",
    "prompt": "a cat sitting on a bench",
    "negative_prompt": None,
    "init_image": "",
    "mask_image": "",
    "width": SIDE,
    "height": SIDE,
    "samples": "1",
    "steps": "30",
    "safety_checker": "no",
    "enhance_prompt": "yes",
    "guidance_scale": 7.5,
    "strength": 0.7,
    "scheduler": "PNDMScheduler",
    "lora_model": None,
    "tomesd": "yes",
    "use_karras_sigmas": "yes",
    "vae": None,
    "lora_strength": None,
    "embeddings_model": None,
    "seed": None,
    "webhook": None,
    "track_id": None,
}
_registered: set[str] = set()


@pytest.fixture
def images(http_server: ScriptedServer) -> ScriptedServer:
    http_server.routes["/in.png"] = Reply(200, png_bytes(scene(SIZE)), {"content-type": "image/png"})
    http_server.routes["/mask.png"] = Reply(200, png_bytes(box_mask(SIZE)), {"content-type": "image/png"})
    return http_server


@pytest.fixture
def ml(stack: Stack, tiny_model_dir) -> Stack:
    return with_model(stack, tiny_model_dir)


@pytest.fixture
def ml_embedded(embedded: Stack, tiny_model_dir) -> Stack:
    return with_model(embedded, tiny_model_dir)


def with_model(stack: Stack, tiny_model_dir) -> Stack:
    """The tiny SD 1.5 pipeline registered as MODEL through the enterprise API's load_model (once per stack)."""
    if stack.name not in _registered:
        answer = httpx.post(
            stack.base_url + "/api/v1/enterprise/load_model",
            timeout=60,
            json={
                "key": stack.admin_key,
                "model_id": MODEL,
                "url": str(tiny_model_dir),
                "model_type": "sd15",
                "max_side": 128,
            },
        )
        assert answer.status_code == 200 and answer.json()["status"] == "success", answer.text
        _registered.add(stack.name)
    return stack


def seed_body(template: dict[str, Any], stack: Stack, server: ScriptedServer, **changes: Any) -> dict[str, Any]:
    return {
        **template,
        "key": stack.user_key,
        "init_image": f"{server.url}/in.png",
        "mask_image": f"{server.url}/mask.png",
        "model_id": MODEL,
        **changes,
    }


def post(stack: Stack, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(stack.base_url + path, json=body, timeout=120)


def outcome(stack: Stack, first: httpx.Response, key: str | None = None) -> dict[str, Any]:
    """The final answer: `first` if it is final, else fetch_result polled until it is."""
    answer = first.json()
    if answer["status"] != "processing":
        return answer
    fetch = answer["fetch_result"]

    def final() -> dict[str, Any] | None:
        again = httpx.post(fetch, json={"key": key or stack.user_key}, timeout=30).json()
        return None if again["status"] == "processing" else again

    return wait_until(final, what="the job to finish", interval=0.3)


def download_pngs(urls: list[str]) -> list[np.ndarray]:
    pictures = []
    for url in urls:
        response = httpx.get(url, timeout=30)
        assert response.status_code == 200, url
        assert response.content.startswith(b"\x89PNG"), url
        pictures.append(np.asarray(decode(response.content).convert("RGB")))
    return pictures


def assert_kept_outside_the_mask(picture: np.ndarray) -> None:
    assert picture.shape == (SIZE[1], SIZE[0], 3)
    keep = np.asarray(box_mask(SIZE)) < 128
    assert np.array_equal(picture[keep], np.asarray(scene(SIZE))[keep])


def test_seed_004_body_succeeds_with_real_images_and_meta(ml: Stack, images: ScriptedServer) -> None:
    first = post(ml, V6, seed_body(SEED_004, ml, images))
    assert first.status_code == 200, first.text
    assert first.json()["status"] in ("success", "processing")
    answer = outcome(ml, first)
    assert answer["status"] == "success", answer
    assert isinstance(answer["id"], int) and answer["id"] == first.json()["id"]  # an integer, as theirs
    assert isinstance(answer["generationTime"], float)
    (picture,) = download_pngs(answer["output"])
    assert_kept_outside_the_mask(picture)
    meta = answer["meta"]
    assert meta["prompt"] == "a cat sitting on a bench" + PROMPT_SUFFIX, "enhance_prompt: yes appends the suffix"
    assert meta["enhance_prompt"] == "yes" and meta["safetychecker"] == "no"
    assert (meta["W"], meta["H"], meta["steps"], meta["n_samples"]) == (*SIZE, 30, 1)
    assert (meta["guidance_scale"], meta["strength"], meta["model_id"]) == (5, 0.7, MODEL)
    assert isinstance(meta["seed"], int) and len(meta["file_prefix"]) == 36  # the job's UUID
    assert (meta["init_image"], meta["mask_image"]) == (f"{images.url}/in.png", f"{images.url}/mask.png")


def test_seed_002_body_runs_as_printed(ml_embedded: Stack, images: ScriptedServer) -> None:
    """The enterprise API's documented example asks for Karras sigmas on PNDMScheduler, which has none: the body runs as
    printed (a drop-in client sends exactly this), and `meta.not_applied` says what was not applied."""
    stack = ml_embedded
    first = post(stack, ENTERPRISE, seed_body(SEED_002, stack, images))
    assert first.status_code == 200, first.text
    answer = outcome(stack, first)
    assert answer["status"] == "success", answer
    (picture,) = download_pngs(answer["output"])
    assert_kept_outside_the_mask(picture)
    meta = answer["meta"]
    assert (meta["scheduler"], meta["steps"]) == ("PNDMScheduler", 30) and "use_karras_sigmas" not in meta
    assert meta["not_applied"] == ["tomesd", "use_karras_sigmas"], "accepted, and said to be not applied"
    assert meta["enhance_prompt"] == "yes" and meta["prompt"].endswith(PROMPT_SUFFIX)


def test_enhance_prompt_no_keeps_the_prompt_and_base64_answers_inline(
    ml_embedded: Stack, images: ScriptedServer
) -> None:
    stack = ml_embedded
    body = seed_body(
        SEED_004, stack, images, enhance_prompt="no", base64="yes", seed="7", samples="2", num_inference_steps="20"
    )
    answer = outcome(stack, post(stack, V6, body))
    assert answer["status"] == "success", answer
    assert answer["meta"]["prompt"] == "a cat sitting on a bench" and answer["meta"]["enhance_prompt"] == "no"
    assert answer["meta"]["seed"] == 7 and answer["meta"]["n_samples"] == 2
    assert len(answer["output"]) == 2 and not answer["output"][0].startswith("http")


def test_instant_response_answers_processing_then_fetch_routes_answer(
    ml_embedded: Stack, images: ScriptedServer
) -> None:
    stack = ml_embedded
    first = post(stack, V6, seed_body(SEED_004, stack, images, instant_response="true"))
    assert first.status_code == 200, first.text
    processing = first.json()
    assert processing["status"] == "processing" and processing["output"] == []
    assert processing["fetch_result"] == f"{stack.base_url}/api/v6/image_editing/fetch/{processing['id']}"
    assert len(processing["future_links"]) == 1 and isinstance(processing["eta"], float | int)
    assert processing["meta"]["model_id"] == MODEL
    done = outcome(stack, first)
    assert done["status"] == "success"
    for path, body in (
        (f"/api/v1/enterprise/fetch/{done['id']}", {"key": stack.user_key}),
        ("/api/v1/enterprise/fetch_queue_image", {"key": stack.user_key, "request_id": done["id"]}),
    ):
        again = post(stack, path, body)
        assert again.status_code == 200 and again.json()["output"] == done["output"], path
    (picture,) = download_pngs(processing["future_links"])
    assert_kept_outside_the_mask(picture)
    other = post(stack, f"/api/v6/image_editing/fetch/{done['id']}", {"key": stack.admin_key})
    assert other.status_code == 404 and other.json()["status"] == "error", "another key's job is not found"


@pytest.mark.parametrize(
    ("changes", "status", "names"),
    [
        ({"key": None}, 401, "key"),
        ({"key": "iq_unknown"}, 401, "API key"),
        ({"samples": "9"}, 400, "samples"),
        ({"width": "1032"}, 400, "width: must be a multiple of 8 from 8 to 128"),  # named as sent
        ({"height": "1024"}, 400, "height: must be a multiple of 8 from 8 to 128"),  # the model's max_side
        ({"guidance_scale": "loud"}, 400, "guidance_scale"),
        ({"cn_model": "Canny"}, 400, "cn_model"),
        ({"safety_checker_type": "blur"}, 400, "safety_checker_type"),
        ({"model_id": "no-such-model"}, 404, "no-such-model"),
    ],
)
def test_errors_answer_in_the_modelslab_shape(
    ml_embedded: Stack, images: ScriptedServer, changes: dict, status: int, names: str
) -> None:
    body = {k: v for k, v in seed_body(SEED_004, ml_embedded, images, **changes).items() if v is not None}
    answer = post(ml_embedded, V6, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["status"] == "error" and names in answer.json()["message"], answer.json()


def test_a_field_of_another_family_says_which_family_takes_it(ml_embedded: Stack, images: ScriptedServer) -> None:
    answer = post(ml_embedded, V6, seed_body(SEED_004, ml_embedded, images, base_model="Juggernaut XL"))
    assert answer.status_code == 400
    assert "base_model" in answer.json()["message"] and "sdxl" in answer.json()["message"]


def test_webhook_gets_the_modelslab_body_with_track_id(ml_embedded: Stack, images: ScriptedServer) -> None:
    stack = ml_embedded
    images.routes["/hook"] = Reply(200, b"ok")
    body = seed_body(SEED_004, stack, images, webhook=f"{images.url}/hook", track_id=12384052, instant_response="true")
    job_id = post(stack, V6, body).json()["id"]
    hook = wait_until(
        lambda: next((r for r in images.received if r.path == "/hook"), None), what="the webhook", timeout=240
    )
    sent = json.loads(hook.body)
    assert sent["status"] == "success" and sent["id"] == job_id and sent["track_id"] == 12384052
    assert isinstance(sent["generationTime"], float) and sent["meta"]["enhance_prompt"] == "yes"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(hook.headers)
    (picture,) = download_pngs(sent["output"])
    assert_kept_outside_the_mask(picture)
    time.sleep(0.5)
    assert sum(1 for r in images.received if r.path == "/hook") == 1, "one terminal event"


def test_enhance_prompt_defaults_to_yes_as_on_modelslab_and_erase_takes_no_such_field(
    ml_embedded: Stack, images: ScriptedServer
) -> None:
    """ModelsLab v6 inpaint documents 'Default is "yes"'. A body that leaves it out gets the suffix, as it would there;
    `erase`, which has no prompt to enhance, takes a body without the field as before."""
    stack = ml_embedded
    body = {k: v for k, v in seed_body(SEED_004, stack, images).items() if k != "enhance_prompt"}
    answer = outcome(stack, post(stack, V6, body))
    assert answer["status"] == "success", answer
    assert answer["meta"]["enhance_prompt"] == "yes" and answer["meta"]["prompt"].endswith(PROMPT_SUFFIX)

    plain = {k: body[k] for k in ("key", "prompt", "init_image", "mask_image")}
    erased = outcome(stack, post(stack, V6, {**plain, "model_id": "erase"}))
    assert erased["status"] == "success", erased
    assert erased["meta"]["prompt"] == "a cat sitting on a bench"
