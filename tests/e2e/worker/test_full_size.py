"""A full-size model without a GPU: the SD 1.5 inpainting architecture (860M-parameter UNet, VAE, CLIP
ViT-L text encoder) with random weights, through the running service's real loaders, on the CPU.

The model is written twice, as a diffusers directory and as one .safetensors checkpoint in the original
Stable Diffusion layout (tests.support.checkpoints), registered both ways with `inpaint-admin models
register` (the checkpoint with the directory as `config`: there is no hub here), and each runs one
512 x 512 job of one step without classifier-free guidance. Both must complete with the same picture:
the same weights (stored in fp16, loaded as fp32 by both loaders) and the same seed. Two inference
workers of one thread each take a job each, so that the two loads (mostly one thread's work) overlap.

Full-size SDXL is left out: one fp32 copy is about 14 GB, and the worker would hold two (one per
layout) beside the test's own, more than a 24 GB runner has; its 1024 px job also takes about five
times SD 1.5's time on a CPU. The tiny SDXL checkpoints (tests/worker/engine/test_single_file.py) run
the same loader, both UNet layouts included.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.worker.test_flow import fetch_outputs
from tests.support.images import box_mask, job_body, scene
from tests.support.stack import Stack, stack_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # 378 to 754 s measured on 2 busy cores

SIZE = (512, 512)
REGISTRATION = ("--family", "sd15", "--sizes", "512", "--default-size", "512")
RANGES = ("--steps", "1:50:1", "--guidance-scale", "1:25:1")
"""One step, guidance 1: diffusers runs no unconditional pass (classifier-free guidance needs more than 1)."""


def test_full_size_sd15_runs_from_its_directory_and_from_one_checkpoint(tmp_path: Path) -> None:
    import torch

    from tests.support.checkpoints import build_full_sd15, write_both_layouts

    started = time.monotonic()
    weights = tmp_path / "weights"
    stack = Stack(
        name="full-size", workdir=tmp_path, env=stack_env("embedded", tmp_path, {}) | {"OMP_NUM_THREADS": "2"}
    )
    try:
        directory, checkpoint = write_both_layouts(build_full_sd15(torch.float16), weights)
        gc.collect()  # the test's own copy goes before the worker loads two
        written = time.monotonic()
        stack.start_all()
        stack.start("worker-2", "inpaint-worker", "run", "--queues", "inpaint", "--name", "inpaint-2@full-size")
        stack.cli("inpaint-admin", "models", "register", "full-folder", str(directory), *REGISTRATION, *RANGES)
        stack.cli(
            "inpaint-admin",
            "models",
            "register",
            "full-single",
            str(checkpoint),
            "--config",
            str(directory),
            *REGISTRATION,
            *RANGES,
        )
        for slug in ("full-folder", "full-single"):
            stack.wait_ready(timeout=120, model=slug)  # a worker is up and reports both as on its disk
        wait_for_workers(stack, 2)
        body = job_body(size=SIZE, seed=5, num_inference_steps=1, guidance_scale=1)
        jobs = [stack.submit(slug, body) for slug in ("full-folder", "full-single")]
        for job in jobs:
            status = stack.wait(job, timeout=900)
            assert status["status"] == "COMPLETED", status
        (folder,), (single,) = (fetch_outputs(stack, job)[1] for job in jobs)
    finally:
        stack.stop_all()
        shutil.rmtree(weights, ignore_errors=True)  # 4 GB: not for pytest's kept temporary directories
    original, hole = np.asarray(scene(SIZE)), np.asarray(box_mask(SIZE)) > 127
    assert folder.shape == (*SIZE, 3)
    assert np.array_equal(folder[~hole], original[~hole]), "unmasked pixels differ from the input"
    assert not np.array_equal(folder[hole], original[hole]), "the masked area was not repainted"
    assert np.array_equal(folder, single), "the checkpoint's weights are not the directory's"
    print(f"built and written in {written - started:.0f} s, both jobs done in {time.monotonic() - written:.0f} s")


def wait_for_workers(stack: Stack, count: int, timeout: float = 120) -> None:
    """Until `count` inference workers report online (system_details), so that each takes a job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{stack.base_url}/api/v1/enterprise/system_details", json={"key": stack.admin_key}, timeout=10
        )
        if sum(worker["online"] for worker in answer.json()["workers"]) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"fewer than {count} workers came online:\n{stack.log('worker-2')[-3000:]}")
