"""Single-file checkpoints through the worker's real loaders, on tiny random pipelines.

Each pipeline is written twice, as a diffusers directory and as one .safetensors file in the
original Stable Diffusion layout (tests.support.checkpoints), and loaded both ways through the
resident cache (`from_pretrained`, `from_single_file` with the directory as `config`): both must
hold the very same weights, which proves the converter, and the same seed must give the same
pixels (SDXL's within one level: its pooled text projection, read from a memory-mapped file or
not, can round its last bit differently). Seconds on a CPU.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from storage.contract.assets import AssetCatalog
from storage.contract.params import resolve_params
from storage.contract.requests import REQUEST_CLASSES
from storage.contract.specs import Family, ModelSpec, Range
from storage.errors import JobFailure
from tests.support.images import box_mask, scene
from worker.engine.inference import inpaint
from worker.engine.pipelines import PipelineCache

KEEP = np.asarray(box_mask()) < 128


def tiny(slug: str, family: Family, source: Path | str, **fields: object) -> ModelSpec:
    return ModelSpec(
        slug=slug,
        family=family,
        source=str(source),
        max_side=128,
        default_size=64,
        steps=Range(min=1, max=10, default=2),
        **fields,  # type: ignore[arg-type]
    )


def pixels(cache: PipelineCache, spec: ModelSpec, seed: int = 3) -> np.ndarray:
    """The first image of a 2-step job on `spec`, loaded (or reused) through `cache`, composited as a job's."""
    request = REQUEST_CLASSES[spec.family].model_validate({"prompt": "a cat", "image": "-", "mask": "-", "seed": seed})
    params = resolve_params(request, spec, image_size=(64, 64), rng=random.Random(0), catalog=AssetCatalog([]))
    (image, *_) = inpaint(cache.get(spec), params, scene(), box_mask(), on_step=lambda step, total: None)
    out = np.asarray(image)
    assert out.shape == (64, 64, 3) and np.array_equal(out[KEEP], np.asarray(scene())[KEEP])
    return out


def assert_same_weights(one: object, other: object) -> None:
    first, second = one.pipe.components, other.pipe.components  # type: ignore[attr-defined]
    modules = [name for name, module in first.items() if hasattr(module, "state_dict")]
    assert modules and {n for n, m in second.items() if hasattr(m, "state_dict")} == set(modules)
    for name in modules:
        mine, theirs = first[name].state_dict(), second[name].state_dict()
        assert mine.keys() == theirs.keys(), name
        assert all(mine[k].equal(theirs[k]) for k in mine), f"{name} differs"


@pytest.fixture
def cache() -> PipelineCache:
    cache = PipelineCache("cpu")
    yield cache
    cache.clear()


def test_an_sd15_checkpoint_gives_the_pictures_of_its_directory(tmp_path: Path, cache: PipelineCache) -> None:
    from tests.support.checkpoints import write_both_layouts
    from worker.tiny.sd15 import build_tiny_pipeline

    directory, checkpoint = write_both_layouts(build_tiny_pipeline(), tmp_path)
    folder_spec, single_spec = (
        tiny("folder", "sd15", directory),
        tiny("single", "sd15", checkpoint, config=str(directory)),
    )
    assert np.array_equal(pixels(cache, folder_spec), pixels(cache, single_spec))
    assert_same_weights(cache.get(folder_spec), cache.get(single_spec))
    assert [r["source"] for r in cache.resident()] == [str(directory), str(checkpoint)]


@pytest.mark.parametrize("in_channels", [9, 4])
def test_an_sdxl_checkpoint_loads_with_either_unet_whatever_its_config_says(
    tmp_path: Path, cache: PipelineCache, in_channels: int
) -> None:
    """A 9-channel inpainting UNet and a plain 4-channel one, each described by the other's config too
    (a community inpainting checkpoint registered with its base model's config)."""
    from tests.support.checkpoints import build_tiny_sdxl_pair, write_both_layouts

    directory, checkpoint = write_both_layouts(build_tiny_sdxl_pair(in_channels=in_channels), tmp_path / "own")
    other, _ = write_both_layouts(build_tiny_sdxl_pair(in_channels=13 - in_channels), tmp_path / "other")
    folder_spec = tiny("folder", "sdxl", directory)
    folder = pixels(cache, folder_spec).astype(int)
    for config in (directory, other):
        single_spec = tiny("single", "sdxl", checkpoint, config=str(config))
        assert np.abs(folder - pixels(cache, single_spec)).max() <= 1
        assert_same_weights(cache.get(folder_spec), cache.get(single_spec))
        cache.evict_source(str(checkpoint))


def test_a_checkpoint_diffusers_cannot_read_fails_the_job_with_a_safe_message(
    tmp_path: Path, cache: PipelineCache
) -> None:
    from tests.support.checkpoints import write_both_layouts
    from worker.tiny.sd15 import build_tiny_pipeline

    directory, _ = write_both_layouts(build_tiny_pipeline(), tmp_path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\0\0\0\0\0\0\0{not json at all}")
    with pytest.raises(JobFailure) as failed:
        cache.get(tiny("broken", "sd15", broken, config=str(directory)))
    assert failed.value.code == "model_unavailable"
    assert failed.value.message == (
        "model 'broken' could not be loaded from its checkpoint: it is not a Stable Diffusion checkpoint "
        "diffusers can read, or its config does not describe it"
    )


def test_without_a_config_or_the_hub_the_message_says_what_to_do(
    tmp_path: Path, cache: PipelineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """diffusers looks a checkpoint's config up on the hub when none is registered; offline it cannot."""
    import huggingface_hub.constants

    from tests.support.checkpoints import save_single_file
    from worker.tiny.sd15 import build_tiny_pipeline

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    checkpoint = save_single_file(build_tiny_pipeline(), tmp_path / "model.safetensors")
    with pytest.raises(JobFailure) as failed:
        cache.get(tiny("no-config", "sd15", checkpoint))
    message = failed.value.message
    assert message.startswith("model 'no-config' could not be loaded: its checkpoint is described by the config")
    assert "the Hugging Face hub could not be reached" in message and "`config`" in message
    assert str(tmp_path) not in message
