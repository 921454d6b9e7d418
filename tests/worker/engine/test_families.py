"""SDXL inpainting and SDXL ControlNet inpainting on tiny random pipelines, loaded through the registry.

Each run goes through the real path (tests.support.tiny_models.Bench): the family's
request class, resolution against the registered names, the worker's source
lookup, the resident cache and `inpaint`.
"""

from __future__ import annotations

import numpy as np
import pytest

from storage.contract.schedulers import NO_ADD_NOISE_CLASSES, SCHEDULERS, SUPPORTED_NAMES
from storage.errors import InvalidInput, JobFailure
from tests.support.images import box_mask, scene

KEEP = np.asarray(box_mask()) < 128
ORIGINAL = np.asarray(scene())


def assert_inpainted(out: np.ndarray) -> None:
    assert np.array_equal(out[KEEP], ORIGINAL[KEEP]), "unmasked pixels differ from the input"
    assert not np.array_equal(out[~KEEP], ORIGINAL[~KEEP]), "the masked area was not repainted"


@pytest.mark.parametrize("name", [n for n in SUPPORTED_NAMES if SCHEDULERS[n].class_name not in NO_ADD_NOISE_CLASSES])
def test_every_scheduler_runs_on_tiny_sdxl(bench, name: str) -> None:
    out = bench.pixels(
        "sdxl-inpaint", {"scheduler": name, "num_inference_steps": 2, "strength": 0.99}, scene(), box_mask()
    )
    assert_inpainted(out)


def test_a_scheduler_without_add_noise_is_refused_where_it_cannot_run(bench) -> None:
    for name in (n for n in SUPPORTED_NAMES if SCHEDULERS[n].class_name in NO_ADD_NOISE_CLASSES):
        with pytest.raises(InvalidInput, match="cannot add noise"):
            bench.params("sdxl-inpaint", {"scheduler": name})
        with pytest.raises(InvalidInput, match="strength 1"):
            bench.params("tiny-sd15", {"scheduler": name, "strength": 0.5})
        assert_inpainted(bench.pixels("tiny-sd15", {"scheduler": name, "strength": 1}, scene(), box_mask()))


def test_base_model_picks_the_weights(bench) -> None:
    default = bench.pixels("sdxl-inpaint", {"seed": 5}, scene(), box_mask())
    named = bench.pixels("sdxl-inpaint", {"seed": 5, "base_model": "SDXL"}, scene(), box_mask())
    juggernaut = bench.pixels("sdxl-inpaint", {"seed": 5, "base_model": "Juggernaut XL"}, scene(), box_mask())
    dreamshaper = bench.pixels("sdxl-inpaint", {"seed": 5, "base_model": "DreamShaper XL"}, scene(), box_mask())
    assert np.array_equal(default, named), "sdxl-inpaint's default base_model is SDXL"
    assert not np.array_equal(named, juggernaut), "another base_model must run other weights"
    assert np.array_equal(juggernaut, dreamshaper), "both names point at the same tiny 4-channel pipeline"
    assert_inpainted(juggernaut)


def test_sdxl_and_controlnet_share_one_resident_pipeline(bench) -> None:
    bench.run("sdxl-inpaint", {"base_model": "Real Vision XL"}, scene(), box_mask())
    bench.run("inpaint-auto", {"cn_model": "Canny"}, scene(), box_mask())
    kinds = [(r["kind"], r["source"]) for r in bench.cache.resident()]
    sdxl_sources = [s for k, s in kinds if k == "sdxl"]
    assert len(sdxl_sources) == len(set(sdxl_sources)), f"a base model was loaded twice: {kinds}"
    assert any(k == "controlnet" for k, _ in kinds)


@pytest.mark.parametrize("processor", ["canny", "depth", "none"])
def test_inpaint_auto_each_cn_model_with_a_mask(bench, processor: str) -> None:
    outputs = {}
    for model in ("Canny", "Depth", "SoftEdge", "Openpose"):
        outputs[model] = bench.pixels(
            "inpaint-auto", {"cn_model": model, "cn_processor": processor, "seed": 3}, scene(), box_mask()
        )
        assert_inpainted(outputs[model])
    # Canny and SoftEdge point at one tiny ControlNet, Depth and Openpose at another.
    assert np.array_equal(outputs["Canny"], outputs["SoftEdge"])
    assert not np.array_equal(outputs["Canny"], outputs["Depth"]), "cn_model did not change the ControlNet"


def test_cn_processor_changes_the_control_image(bench) -> None:
    outputs = [
        bench.pixels("inpaint-auto", {"cn_processor": p, "seed": 3}, scene(), box_mask())
        for p in ("canny", "depth", "none")
    ]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(outputs[i], outputs[j]), "two processors gave the same picture"


@pytest.mark.parametrize("processor", ["canny", "depth", "none"])
def test_inpaint_auto_without_a_mask_repaints_everything(bench, processor: str) -> None:
    from PIL import Image

    whole = Image.new("L", (64, 64), 255)  # what the API stores when a request has no mask
    out = bench.pixels("inpaint-auto", {"mask": None, "cn_processor": processor}, scene(), whole)
    changed = np.any(out != ORIGINAL, axis=-1)
    assert changed[KEEP].mean() > 0.9, "pixels outside any mask must be repainted too"


def test_control_images() -> None:
    from worker.engine.control import canny_edges, make_control_image

    edges = np.asarray(canny_edges(scene()))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) <= {0, 255}
    assert edges[21, 21:43].max() == 255, "the yellow box's edge is an edge"
    assert np.array_equal(np.asarray(make_control_image("none", scene())), ORIGINAL)
    with pytest.raises(ValueError, match="sobel"):
        make_control_image("sobel", scene())


def test_depth_estimator_from_the_registry(bench, tiny_assets) -> None:
    from worker.engine.loading import load_depth_estimator
    from worker.engine.types import NamedSource

    estimator = load_depth_estimator(NamedSource(name="depth", source=str(tiny_assets["depth"])), "cpu")
    depth = np.asarray(estimator(scene((48, 32))))
    assert depth.shape == (32, 48, 3) and depth.min() == 0 and depth.max() == 255


def test_scheduler_options_change_the_sampler(bench) -> None:
    steps = {"seed": 1, "num_inference_steps": 4}  # with 2 steps Karras and linear sigmas coincide
    base = bench.pixels("sdxl-inpaint", {"scheduler": "Euler", **steps}, scene(), box_mask())
    karras = bench.pixels(
        "sdxl-inpaint", {"scheduler": "Euler", "use_karras_sigmas": True, **steps}, scene(), box_mask()
    )
    named = bench.pixels("sdxl-inpaint", {"scheduler": "Euler Karras", **steps}, scene(), box_mask())
    assert not np.array_equal(base, karras) and np.array_equal(karras, named)
    dpm = bench.pixels(
        "sdxl-inpaint", {"scheduler": "DPM++ 2M", "seed": 1, "num_inference_steps": 3}, scene(), box_mask()
    )
    sde = bench.pixels(
        "sdxl-inpaint",
        {"scheduler": "DPM++ 2M", "algorithm_type": "sde-dpmsolver++", "seed": 1, "num_inference_steps": 3},
        scene(),
        box_mask(),
    )
    assert not np.array_equal(dpm, sde)


@pytest.mark.parametrize("slug", ["tiny-sd15", "sdxl-inpaint"])
def test_clip_skip_changes_the_prompt_embedding(bench, slug: str) -> None:
    plain = bench.pixels(slug, {"seed": 2}, scene(), box_mask())
    one = bench.pixels(slug, {"seed": 2, "clip_skip": 1}, scene(), box_mask())
    two = bench.pixels(slug, {"seed": 2, "clip_skip": 2}, scene(), box_mask())
    assert np.array_equal(plain, one), "clip_skip 1 is no skip"
    assert not np.array_equal(plain, two)
    with pytest.raises(JobFailure, match="clip_skip 8 is too large"):
        bench.run(slug, {"clip_skip": 8}, scene(), box_mask())
