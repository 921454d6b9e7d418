"""cn_processor through the service with the tiny ControlNets: Segmind inpaint-auto's example body as
printed (a scheduler name as cn_processor), one job per processor family, and one job for each processor
that runs a network (the annotators and the depth estimators, tiny random versions of each)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from storage.contract.assets import AssetSpec
from storage.contract.processors import ANNOTATOR_MODULES, DEPTH_MODELS
from storage.database.assets import register_asset
from tests.e2e.worker.test_flow import fetch_outputs
from tests.e2e.worker.test_xl_flow import with_tiny_assets
from tests.support.db import stack_session
from tests.support.images import job_body
from tests.support.stack import Stack

NETWORK_PROCESSORS = (*ANNOTATOR_MODULES, *DEPTH_MODELS)


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
        ("dwpose", "canny"),  # needs a network we lack: the Canny default, said not applied
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


@pytest.mark.timeout(900)
def test_every_network_processor_runs_through_the_service(auto: Stack) -> None:
    """Segmind's processor names that need a network (HED, PiDiNet, line art, OpenPose, the depth
    estimators), one job each, all queued at once: each runs its network, and meta says it was applied."""
    jobs = {
        name: auto.submit("inpaint-auto", job_body(cn_model="Openpose", cn_processor=name, seed=4))
        for name in NETWORK_PROCESSORS
    }
    outputs = {}
    for name, job_id in jobs.items():
        status = auto.wait(job_id, timeout=600)
        assert status["status"] == "COMPLETED", (name, status)
        result, (out,) = fetch_outputs(auto, job_id)
        assert result["meta"]["cn_processor"] == name and "not_applied" not in result["meta"], (name, result["meta"])
        assert out.shape == (64, 64, 3)
        outputs[name] = out
    for one, other in (("hed", "pidinet"), ("lineart", "lineart_anime"), ("openpose", "depth_anything")):
        assert not np.array_equal(outputs[one], outputs[other]), f"{one} and {other} made the same image"


def test_missing_annotator_files_fail_the_job_naming_the_file(auto: Stack, tiny_assets, tmp_path) -> None:
    """The annotators asset pointed at a directory without the HED file: the job fails saying which file."""

    def point_at(source: str) -> None:
        with stack_session(auto) as session:
            spec = AssetSpec(kind="annotators", name="annotators", source=source)
            register_asset(session, spec, now=datetime.now(UTC))

    point_at(str(tmp_path))
    try:
        status = auto.wait(auto.submit("inpaint-auto", job_body(cn_model="SoftEdge", cn_processor="hed")))
    finally:
        point_at(str(tiny_assets["annotators"]))
    assert status["status"] == "FAILED" and status["error_code"] == "model_unavailable", status
    assert "ControlNetHED.pth" in status["error"], status
