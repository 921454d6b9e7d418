"""LoRAs, VAEs and textual-inversion embeddings: applied for one job, gone for the next.

The leak test runs job A with adapters on the resident pipeline, then job B without
them on the same pipeline, and compares B with the same job on a fresh cache that
never saw an adapter.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.images import box_mask, scene

SLUGS = {"sd15": "tiny-sd15", "sdxl": "sdxl-inpaint"}
LORA = {"sd15": "tiny-lora", "sdxl": "tiny-lora-xl"}
EMBEDDING = {"sd15": "tinytoken", "sdxl": "tinytoken-xl"}


def fresh_run(bench, slug: str, body: dict) -> np.ndarray:
    from worker.engine.pipelines import PipelineCache

    cache = PipelineCache("cpu")
    try:
        return bench.pixels(slug, body, scene(), box_mask(), cache=cache)
    finally:
        cache.clear()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_job_after_adapters_matches_a_pipeline_that_never_saw_them(bench, family: str) -> None:
    slug = SLUGS[family]
    token = EMBEDDING[family]
    plain = {"prompt": f"a {token} on a bench", "seed": 11}
    adapted = {**plain, "lora_model": LORA[family], "vae": "tiny-vae", "embeddings_model": token}
    job_a = bench.pixels(slug, adapted, scene(), box_mask())
    job_b = bench.pixels(slug, plain, scene(), box_mask())
    never = fresh_run(bench, slug, plain)
    assert not np.array_equal(job_a, never), "the adapters had no effect"
    assert np.array_equal(job_b, never), "job B inherited job A's adapters"


def test_lora_weights_are_honoured(bench) -> None:
    body = {"seed": 4}
    none = bench.pixels("tiny-sd15", body, scene(), box_mask())
    zero = bench.pixels("tiny-sd15", {**body, "lora_model": "tiny-lora", "lora_strength": 0}, scene(), box_mask())
    full = bench.pixels("tiny-sd15", {**body, "lora_model": "tiny-lora", "lora_strength": 1}, scene(), box_mask())
    half = bench.pixels("tiny-sd15", {**body, "lora_model": "tiny-lora", "lora_strength": 0.5}, scene(), box_mask())
    assert np.abs(zero.astype(int) - none).max() <= 1, "a LoRA at weight 0 must leave the picture as it was"
    assert not np.array_equal(full, none) and not np.array_equal(half, full)


def test_several_loras_at_once(bench) -> None:
    body = {"seed": 4}
    first = bench.pixels("tiny-sd15", {**body, "lora_model": "tiny-lora"}, scene(), box_mask())
    both = bench.pixels("tiny-sd15", {**body, "lora_model": "tiny-lora,tiny-lora-b"}, scene(), box_mask())
    weighted = bench.pixels(
        "tiny-sd15",
        {**body, "lora_model": "tiny-lora,tiny-lora-b", "lora_strength": "1,0"},
        scene(),
        box_mask(),
    )
    assert not np.array_equal(first, both), "the second LoRA had no effect"
    assert np.abs(weighted.astype(int) - first).max() <= 1, "weights follow lora_model's order"


def test_vae_is_swapped_for_the_job_and_back(bench) -> None:
    inpainter = bench.cache.get(bench.params("tiny-sd15", {})[0])
    original = inpainter.pipe.vae
    plain = bench.pixels("tiny-sd15", {"seed": 8}, scene(), box_mask())
    swapped = bench.pixels("tiny-sd15", {"seed": 8, "vae": "tiny-vae"}, scene(), box_mask())
    assert not np.array_equal(plain, swapped)
    assert inpainter.pipe.vae is original


def test_embedding_token_only_exists_during_its_job(bench) -> None:
    inpainter = bench.cache.get(bench.params("tiny-sd15", {})[0])
    tokenizer = inpainter.pipe.tokenizer
    size = len(tokenizer)
    body = {"prompt": "a tinytoken cat", "seed": 6}
    with_embedding = bench.pixels("tiny-sd15", {**body, "embeddings_model": "tinytoken"}, scene(), box_mask())
    without = bench.pixels("tiny-sd15", body, scene(), box_mask())
    assert not np.array_equal(with_embedding, without), "the embedding did not change the prompt"
    assert len(tokenizer) == size and "tinytoken" not in tokenizer.get_vocab()


def test_a_failing_adapter_leaves_nothing_behind(bench, tiny_assets) -> None:
    from storage.contract.assets import AssetSpec
    from storage.errors import JobFailure

    bench.register(AssetSpec(kind="lora", name="broken", source=str(tiny_assets.root / "missing.safetensors")))
    with pytest.raises(JobFailure, match="LoRA 'broken' could not be loaded"):
        bench.run("tiny-sd15", {"lora_model": "tiny-lora,broken"}, scene(), box_mask())
    after = bench.pixels("tiny-sd15", {"seed": 9}, scene(), box_mask())
    assert np.array_equal(after, fresh_run(bench, "tiny-sd15", {"seed": 9}))
