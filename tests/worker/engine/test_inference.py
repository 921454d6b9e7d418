"""The pure inference function on the tiny diffusers pipeline, loaded through the real loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from storage.contract.params import JobParams
from storage.contract.schedulers import SUPPORTED_NAMES
from storage.contract.specs import ModelSpec, Range
from tests.support.images import box_mask, scene


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    from worker.engine.pipelines import PipelineCache

    spec = ModelSpec(
        slug="tiny",
        family="sd15",
        source=str(tiny_model_dir),
        sizes=None,
        max_side=128,
        default_size=64,
        steps=Range(min=1, max=50, default=2),
    )
    cache = PipelineCache("cpu")
    inpainter = cache.get(spec)
    assert cache.get(spec) is inpainter, "a second get must not load again"
    return inpainter


def params(**overrides: object) -> JobParams:
    base = dict(
        prompt="a cat",
        negative_prompt=None,
        samples=1,
        scheduler="DDIM",
        num_inference_steps=2,
        guidance_scale=7.5,
        strength=1.0,
        seed=3,
        width=64,
        height=64,
    )
    return JobParams(**{**base, **overrides})


@pytest.mark.parametrize("name", SUPPORTED_NAMES)
def test_every_scheduler_runs_on_the_tiny_pipeline(tiny, name: str) -> None:
    from worker.engine.inference import inpaint

    steps: list[tuple[int, int]] = []
    images = inpaint(
        tiny,
        params(scheduler=name, num_inference_steps=3),
        scene(),
        box_mask(),
        on_step=lambda s, t: steps.append((s, t)),
    )
    assert len(images) == 1 and images[0].size == (64, 64)
    assert steps and steps[-1][0] == steps[-1][1], f"progress did not reach the end: {steps}"
    out = np.asarray(images[0])
    keep = np.asarray(box_mask()) < 128
    assert np.array_equal(out[keep], np.asarray(scene())[keep])
    assert np.isfinite(out.astype(float)).all() and out[~keep].std() > 0, "the masked area is blank"


def test_resize_to_the_job_size(tiny) -> None:
    from worker.engine.inference import inpaint

    images = inpaint(tiny, params(width=48, height=32), scene((96, 64)), box_mask((96, 64)), on_step=lambda s, t: None)
    assert images[0].size == (48, 32)


def test_erase_is_deterministic_and_keeps_pixels() -> None:
    from worker.engine.erase import EraseInpainter
    from worker.engine.inference import inpaint

    images = inpaint(EraseInpainter(), params(samples=2), scene(), box_mask(), on_step=lambda s, t: None)
    a, b = (np.asarray(i) for i in images)
    assert np.array_equal(a, b)
    keep = np.asarray(box_mask()) < 128
    assert np.array_equal(a[keep], np.asarray(scene())[keep])


def test_an_erase_job_never_imports_torch() -> None:
    """The worker's own path for an erase job (the resident cache, components, inference) in a fresh
    interpreter: torch is not imported, so a first erase job pays no torch import (seconds)."""
    script = (
        "import sys\n"
        "from storage.database.registry import BUILTIN\n"
        "from tests.support.images import box_mask, scene\n"
        "from tests.worker.engine.test_inference import params\n"
        "from worker.engine.components import JobSources\n"
        "from worker.engine.pipelines import PipelineCache\n"
        "from worker.jobs.runner import run_inference\n"
        "spec = BUILTIN['erase']\n"
        "images, flags = run_inference(PipelineCache('cpu'), JobSources(spec=spec), params(), scene(), box_mask(),\n"
        "                              on_step=lambda s, t: None)\n"
        "assert len(images) == 1 and flags is None\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "an erase job imported torch"


def test_vae_tiling_and_slicing_only_when_the_size_needs_them(tiny, monkeypatch) -> None:
    import worker.engine.diffusion as diffusion
    from worker.engine.inference import inpaint

    vae = tiny.pipe.vae
    seen: list[tuple[bool, bool]] = []
    decode = vae.decode

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((vae.use_tiling, vae.use_slicing))
        return decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", spy)

    def run(**overrides: object) -> tuple[bool, bool]:
        seen.clear()
        inpaint(tiny, params(**overrides), scene(), box_mask(), on_step=lambda s, t: None)
        assert seen and (vae.use_tiling, vae.use_slicing) == (False, False), "the call left them on"
        return seen[-1]

    assert run() == (False, False), "a 64 px job needs neither"
    monkeypatch.setattr(diffusion, "TILING_PIXELS", 64 * 64 - 1)
    monkeypatch.setattr(diffusion, "SLICING_PIXELS", 2 * 64 * 64)
    assert run() == (True, False)
    assert run(width=48) == (False, False)
    assert run(samples=3) == (True, True)
    assert run(samples=3, width=48, height=48) == (False, False), "3 x 48 x 48 is under the slicing limit"
