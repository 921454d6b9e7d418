"""The AUTOMATIC1111 scheduler names that Segmind's lists most likely hide ("+19 more") through the
service: each runs a job to COMPLETED and the result records the name it was asked for."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.worker.test_flow import fetch_outputs
from tests.e2e.worker.test_xl_flow import with_tiny_assets
from tests.storage.contract.test_schedulers import A1111_NAMES
from tests.support.images import job_body
from tests.support.stack import Stack


@pytest.fixture
def tiny(embedded: Stack, tiny_assets, tiny_model_dir) -> Stack:
    return with_tiny_assets(embedded, tiny_assets, tiny_model_dir)


@pytest.mark.timeout(600)
def test_each_a1111_name_runs_a_job(tiny: Stack) -> None:
    jobs = {
        name: tiny.submit("tiny-sd15", job_body(scheduler=name, num_inference_steps=6, seed=5)) for name in A1111_NAMES
    }
    outputs = {}
    for name, job_id in jobs.items():
        status = tiny.wait(job_id)
        assert status["status"] == "COMPLETED", (name, status)
        result, (out,) = fetch_outputs(tiny, job_id)
        assert result["params"]["scheduler"] == name, result["params"]
        outputs[name] = out
    assert not np.array_equal(outputs["PLMS"], outputs["DPM fast"]), "two solvers, one image: the name was not used"


def test_names_without_a_diffusers_equivalent_are_refused_listing_the_accepted(tiny: Stack) -> None:
    for name in ("DPM adaptive", "Restart"):
        with tiny.client() as client:
            answer = client.post("/v2/tiny-sd15", json=job_body(scheduler=name))
        assert answer.status_code == 400, answer.text
        error = answer.json()["errors"][0]
        assert error["field"] == "scheduler" and "PLMS" in error["message"], error
