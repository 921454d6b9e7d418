"""Which jobs may share a pipeline call (storage.contract.batching.batch_signature).

Running batches through the worker is tests/worker/jobs/test_batch.py."""

from __future__ import annotations

from storage.contract.batching import batch_signature


def test_signatures() -> None:
    from storage.contract.params import JobParams

    base = JobParams(
        prompt="a",
        negative_prompt=None,
        samples=1,
        scheduler="DDIM",
        num_inference_steps=2,
        guidance_scale=5,
        strength=1,
        seed=1,
        width=64,
        height=64,
    )
    same = base.model_copy(update={"prompt": "b", "seed": 9, "safety": "blur"})
    assert batch_signature("sd15", base) == batch_signature("sd15", same) is not None
    for change in (
        {"width": 128},
        {"num_inference_steps": 3},
        {"scheduler": "Euler"},
        {"guidance_scale": 6.0},
        {"negative_prompt": ""},
    ):
        assert batch_signature("sd15", base.model_copy(update=change)) != batch_signature("sd15", base), change
    assert batch_signature("sd15", base.model_copy(update={"samples": 2})) is None
    assert batch_signature("erase", base) is None
