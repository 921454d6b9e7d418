"""cn_processor through the service with the tiny ControlNets: Segmind inpaint-auto's example body as
printed (a scheduler name as cn_processor), and one job per processor family."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.worker.test_flow import fetch_outputs
from tests.e2e.worker.test_xl_flow import with_tiny_assets
from tests.support.images import job_body
from tests.support.stack import Stack


@pytest.fixture
def auto(embedded: Stack, tiny_assets, tiny_model_dir) -> Stack:
    return with_tiny_assets(embedded, tiny_assets, tiny_model_dir)


@pytest.mark.parametrize(
    "cn_processor,runs",
    [
        ("mlsd", "mlsd"),  # lines
        ("shuffle", "shuffle"),  # colours
        ("normal_map", "normal_map"),  # from the depth estimator
        ("depth_leres", "depth"),  # mapped onto the registered depth estimator
        ("openpose_full", "canny"),  # needs a network we lack: the Canny default, said not applied
    ],
)
def test_each_processor_family_runs_through_the_service(auto: Stack, cn_processor: str, runs: str) -> None:
    body = job_body(cn_model="Canny", cn_processor=cn_processor, seed=4, num_inference_steps=20)
    job_id = auto.submit("inpaint-auto", body)
    status = auto.wait(job_id)
    assert status["status"] == "COMPLETED", status
    result, (out,) = fetch_outputs(auto, job_id)
    assert result["params"]["control"] == {"model": "Canny", "processor": runs}
    assert result["meta"]["cn_processor"] == runs
    assert result["meta"].get("not_applied") == (None if cn_processor == runs or runs == "depth" else ["cn_processor"])
    assert out.shape == (64, 64, 3) and np.isfinite(out).all()


def test_the_processor_reaches_the_control_image(auto: Stack) -> None:
    """Same seed, same everything but cn_processor: the outputs differ, so the control image changed."""
    outputs = []
    for cn_processor in ("mlsd", "shuffle", "normal_map"):
        job_id = auto.submit("inpaint-auto", job_body(cn_model="Canny", cn_processor=cn_processor, seed=4))
        assert auto.wait(job_id)["status"] == "COMPLETED"
        outputs.append(fetch_outputs(auto, job_id)[1][0])
    assert not np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[1], outputs[2])


@pytest.mark.timeout(900)  # 25 steps of an SDE scheduler plus the depth estimator, on 2 busy cores
def test_segmind_example_body_runs_as_printed(auto: Stack) -> None:
    """Segmind inpaint-auto's example, field for field (its image URL swapped for an inline image): its
    cn_processor is a scheduler name, so the Depth ControlNet's own processor runs and meta says so."""
    body = {
        "image": job_body()["image"],
        "prompt": "woman in space suit , underwater, full body, floating in water, air bubbles, detailed eyes, "
        "deep sea in background, water surface, god ray, fish",
        "negative_prompt": "disfigured, deformed, ugly",
        "samples": 1,
        "base_model": "SDXL",
        "cn_model": "Depth",
        "cn_processor": "DPM++ 2M SDE Karras",
        "scheduler": "DPM++ 2M SDE Karras",
        "num_inference_steps": 25,
        "guidance_scale": 7,
        "seed": 12467,
        "strength": 0.9,
        "base64": False,
    }
    with auto.client() as client:
        answer = client.post("/v1/inpaint-auto", json=body, timeout=180)
    assert answer.status_code in (200, 504), answer.text  # 504: not done within the wait; it still runs
    job_id = answer.headers["x-request-id"]
    assert auto.wait(job_id)["status"] == "COMPLETED"
    result, (out,) = fetch_outputs(auto, job_id)
    assert result["params"]["control"] == {"model": "Depth", "processor": "depth"}
    assert result["meta"]["cn_processor"] == "depth" and result["meta"]["not_applied"] == ["cn_processor"]
    assert out.shape == (64, 64, 3)
