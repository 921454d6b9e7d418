"""SDXL, ControlNet, adapters and safety over HTTP, against real processes on both topologies.

The stacks' registries point the built-in names (base models, ControlNets, the safety
checker, the depth estimator) at the tiny models, with the checker's score_offset at 2
so that every checked image is flagged.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from storage.contract.resolve import PROMPT_SUFFIX
from tests.e2e.worker.test_flow import fetch_outputs
from tests.support.db import stack_session
from tests.support.images import b64, box_mask, job_body, scene
from tests.support.stack import Stack
from tests.support.tiny_models import register_tiny_assets
from tests.support.waiting import wait_until

_ready: set[str] = set()


def with_tiny_assets(stack: Stack, tiny_assets, sd15_dir) -> Stack:
    """The stack, its registry pointing at the tiny models (once per stack)."""
    if stack.name not in _ready:
        with stack_session(stack) as session:
            register_tiny_assets(session, tiny_assets, sd15_dir=sd15_dir, score_offset=2.0)
        _ready.add(stack.name)
    return stack


@pytest.fixture
def xl(stack: Stack, tiny_assets, tiny_model_dir) -> Stack:
    return with_tiny_assets(stack, tiny_assets, tiny_model_dir)


@pytest.fixture
def xl_embedded(embedded: Stack, tiny_assets, tiny_model_dir) -> Stack:
    return with_tiny_assets(embedded, tiny_assets, tiny_model_dir)


def post(stack: Stack, model: str, body: dict) -> tuple[int, dict]:
    with stack.client() as client:
        response = client.post(f"/v2/{model}", json=body)
    return response.status_code, response.json()


def test_sdxl_inpaint_with_base_model_lora_and_enhanced_prompt(xl: Stack) -> None:
    body = job_body(
        seed=21,
        samples=2,
        base_model="Juggernaut XL",
        lora_model="tiny-lora-xl",
        lora_strength="0.8",
        enhance_prompt="yes",
        tomesd="yes",
        scheduler="DPM++ 2M Karras",
    )
    job_id = xl.submit("sdxl-inpaint", body)
    assert xl.wait(job_id)["status"] == "COMPLETED"
    result, images = fetch_outputs(xl, job_id)
    assert result["seeds"] == [21, 22] and len(images) == 2
    keep = np.asarray(box_mask()) < 128
    for out in images:
        assert np.array_equal(out[keep], np.asarray(scene())[keep])
    assert result["params"]["base_model"] == "Juggernaut XL"
    assert result["params"]["adapters"]["loras"] == [{"name": "tiny-lora-xl", "weight": 0.8}]
    assert result["params"]["ignored"] == ["tomesd"]
    assert result["meta"]["prompt"] == "a red apple" + PROMPT_SUFFIX
    assert result["nsfw"] is None


def test_inpaint_auto_without_a_mask_repaints_the_whole_image(xl: Stack) -> None:
    body = job_body(cn_model="Depth", seed=5)
    del body["mask"]
    job_id = xl.submit("inpaint-auto", body)
    status = xl.wait(job_id)
    assert status["status"] == "COMPLETED", status
    result, (out,) = fetch_outputs(xl, job_id)
    assert result["params"]["control"] == {"model": "Depth", "processor": "depth"}
    assert np.any(out != np.asarray(scene()), axis=-1).mean() > 0.9


def test_flagged_images_are_replaced_and_reported(xl_embedded: Stack) -> None:
    # /v2 blocks flagged images by default (Segmind); nsfw_action asks for the Stable Diffusion API's replacement
    body = job_body(safety_checker="yes", safety_checker_type="black", samples=2, nsfw_action="replace")
    job_id = xl_embedded.submit("tiny-sd15", body)
    assert xl_embedded.wait(job_id)["status"] == "COMPLETED"
    result, images = fetch_outputs(xl_embedded, job_id)
    assert result["nsfw"] == [True, True] and result["meta"]["safetychecker"] == "yes"
    assert all(out.max() == 0 for out in images)


@pytest.mark.parametrize(
    "model,field,value,words",
    [
        (
            "erase",
            "lora_model",
            "tiny-lora",
            ["not accepted by model 'erase'", "sd15, sdxl, sdxl-controlnet"],
        ),
        ("erase", "safety_checker", "yes", ["not accepted by model 'erase'"]),
        ("tiny-sd15", "base_model", "SDXL", ["not accepted by model 'tiny-sd15'", "sdxl, sdxl-controlnet"]),
        ("tiny-sd15", "cn_model", "Canny", ["sdxl-controlnet"]),
        ("sdxl-inpaint", "base_model", "Nope XL", ["Nope XL", "Juggernaut XL"]),
        ("sdxl-inpaint", "lora_model", "tiny-lora", ["sd15 models"]),
    ],
)
def test_a_field_the_model_cannot_honour_is_400(
    xl_embedded: Stack, model: str, field: str, value: str, words: list[str]
) -> None:
    status, answer = post(xl_embedded, model, job_body(**{field: value}))
    assert status == 400, answer
    assert answer["error"].startswith(field), answer
    for word in words:
        assert word in answer["error"], answer["error"]


def test_missing_base_model_weights_are_refused_or_fail_the_job_naming_them(xl_embedded: Stack, tmp_path) -> None:
    """Queued while no worker could say (scale-from-zero), the job fails naming the base model; once a
    worker has reported its weights missing, a submit naming it is refused at once."""
    from datetime import UTC, datetime

    from storage.contract.assets import AssetSpec
    from storage.database.assets import register_asset

    with stack_session(xl_embedded) as session:
        register_asset(
            session,
            AssetSpec(kind="base_model", name="Gone XL", source=str(tmp_path / "gone"), family="sdxl"),
            now=datetime.now(UTC),
        )
    with xl_embedded.worker_stopped():
        job_id = xl_embedded.submit("sdxl-inpaint", job_body(base_model="Gone XL"))
    status = xl_embedded.wait(job_id)
    assert status["status"] == "FAILED" and status["error_code"] == "model_unavailable", status
    assert "'Gone XL'" in status["error"] and "sdxl-inpaint" in status["error"]
    assert str(tmp_path) not in status["error"]

    def refused() -> dict | None:
        code, answer = post(xl_embedded, "sdxl-inpaint", job_body(base_model="Gone XL"))
        return answer if code == 503 else None

    answer = wait_until(refused, timeout=60, interval=0.5, what="the worker to report the base model missing")
    assert answer["error"] == (
        "base_model 'Gone XL' of model 'sdxl-inpaint' cannot be served right now: "
        "it could not be loaded: its local path does not exist"
    ), "the worker's last load failed; that state holds for 5 minutes"
    assert str(tmp_path) not in answer["error"], "a worker's path is not shown to clients"


def test_image_larger_than_the_model_is_inpainted_only_masked(xl_embedded: Stack) -> None:
    from PIL import Image

    big = scene((192, 128))
    mask = Image.new("L", big.size, 0)
    mask.paste(255, (80, 40, 110, 70))
    body = job_body(
        image=b64(big),
        mask=b64(mask),
        inpaint_only_masked=True,
        mask_padding=8,
        img_width=64,
        img_height=64,
    )
    job_id = xl_embedded.submit("sdxl-inpaint", body)
    assert xl_embedded.wait(job_id)["status"] == "COMPLETED"
    _, (out,) = fetch_outputs(xl_embedded, job_id)
    hole = np.asarray(mask) > 127
    assert out.shape == (128, 192, 3)
    assert np.array_equal(out[~hole], np.asarray(big)[~hole])


def test_every_submit_route_takes_the_family_fields(xl_embedded: Stack) -> None:
    """v1, batch and the ModelsLab route validate with the named model's family, like v2."""
    stack = xl_embedded
    with stack.client() as client:
        v1 = client.post("/v1/sdxl-inpaint", json=job_body(base_model="Juggernaut XL", seed=3), timeout=120)
        assert v1.status_code in (200, 504), v1.text  # 504: not done within the wait; it still runs
        auto = {"model": "inpaint-auto", "cn_model": "Canny", "cn_processor": "canny", **job_body()}
        wrong = {"model": "tiny-sd15", "cn_model": "Canny", **job_body()}
        batch = client.post("/v2/batch", json={"requests": [auto, wrong]})
    assert batch.status_code == 200, batch.text
    accepted, refused = batch.json()["items"]
    assert refused["http_status"] == 400 and "sdxl-controlnet" in refused["error"], refused
    assert stack.wait(accepted["request_id"])["status"] == "COMPLETED"
    result, _ = fetch_outputs(stack, accepted["request_id"])
    assert result["params"]["control"] == {"model": "Canny", "processor": "canny"}
    assert stack.wait(v1.headers["x-request-id"])["status"] == "COMPLETED"
    v1_result, _ = fetch_outputs(stack, v1.headers["x-request-id"])
    assert v1_result["params"]["base_model"] == "Juggernaut XL" and v1_result["seeds"] == [3]

    body = {
        "key": stack.user_key,
        "model_id": "inpaint-auto",
        "prompt": "a red apple",
        "init_image": job_body()["image"],
        "cn_model": "Depth",
        "seed": "9",
        "instant_response": "yes",
    }
    answer = httpx.post(stack.base_url + "/api/v6/image_editing/inpaint", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["meta"]["cn_model"] == "Depth" and answer.json()["meta"]["cn_processor"] == "depth"
    assert isinstance(answer.json()["id"], int), "ModelsLab's ids are integers"
    job_id = answer.json()["meta"]["file_prefix"]  # the job's UUID, which the v2 routes take
    assert stack.wait(job_id)["status"] == "COMPLETED", "no mask_image: inpaint-auto repaints all"
