"""The safety checker: a tiny random StableDiffusionSafetyChecker from the registry, flagging forced
through its documented `score_offset`, and each replacement type of the Stable Diffusion API enterprise."""

from __future__ import annotations

import numpy as np
import pytest

from storage.contract.assets import AssetSpec
from tests.support.images import box_mask, scene

TYPES = ["blur", "pixelate", "black", "sensitive_content_text"]


@pytest.fixture
def checker_offset(bench, tiny_assets):
    """set(offset): re-register the default checker with this score_offset; restored to 0 after the test."""

    def set_offset(offset: float) -> None:
        bench.register(
            AssetSpec(
                kind="safety_checker",
                name="default",
                source=str(tiny_assets["safety"]),
                options={"score_offset": offset},
            )
        )

    yield set_offset
    set_offset(0.0)


@pytest.mark.parametrize("kind", TYPES)
def test_a_flagged_image_is_replaced_and_reported(bench, checker_offset, kind: str) -> None:
    checker_offset(2.0)  # every cosine score is above -1: +2 flags everything
    body = {"seed": 3, "samples": 2, "safety_checker": True, "safety_checker_type": kind}
    images, nsfw = bench.run("tiny-sd15", body, scene(), box_mask())
    assert nsfw == [True, True]
    unchecked, _ = bench.run("tiny-sd15", {"seed": 3, "samples": 2}, scene(), box_mask())
    for image, original in zip(images, unchecked, strict=True):
        out, before = np.asarray(image).astype(int), np.asarray(original).astype(int)
        assert out.shape == before.shape and not np.array_equal(out, before)
        if kind == "black":
            assert out.max() == 0
        elif kind == "pixelate":
            assert np.array_equal(out[:4, :4], np.broadcast_to(out[0, 0], (4, 4, 3))), "a 4x4 block is one colour"
        elif kind == "blur":
            assert np.abs(np.diff(out, axis=1)).mean() < np.abs(np.diff(before, axis=1)).mean() / 2
        else:
            assert (out == 32).all(axis=-1).mean() > 0.7 and (out > 200).any(), "dark card with light text"


def test_an_unflagged_image_is_left_alone(bench, checker_offset) -> None:
    checker_offset(-2.0)
    images, nsfw = bench.run("tiny-sd15", {"seed": 3, "safety_checker": "yes"}, scene(), box_mask())
    plain, unchecked = bench.run("tiny-sd15", {"seed": 3}, scene(), box_mask())
    assert nsfw == [False] and unchecked is None
    assert np.array_equal(np.asarray(images[0]), np.asarray(plain[0]))


def test_the_checker_scores_like_diffusers(bench, tiny_assets) -> None:
    """At offset 0 the flags agree with StableDiffusionSafetyChecker's own forward pass."""
    import torch

    from worker.engine.loading import load_safety_checker
    from worker.engine.types import NamedSource

    checker = load_safety_checker(NamedSource(name="default", source=str(tiny_assets["safety"])), "cpu")
    images = [scene(), scene((64, 64)).rotate(90), box_mask().convert("RGB")]
    pixels = checker.processor(images, return_tensors="pt").pixel_values
    _, expected = checker.model(clip_input=pixels, images=torch.zeros(3, 8, 8, 3).numpy())
    assert checker.flags(images) == [bool(e) for e in expected]


def test_a_flagged_image_fails_a_job_that_blocks(bench, checker_offset) -> None:
    """nsfw_action block (Segmind's semantics): the screen raises content_blocked, so nothing is stored."""
    from storage.database.engine import session_scope
    from storage.errors import JobFailure
    from worker.jobs.attempt import screen
    from worker.jobs.sources import resolve_sources

    spec, params = bench.params("tiny-sd15", {"seed": 3, "safety_checker": True})
    blocked = params.model_copy(update={"nsfw_action": "block"})

    def sources_at(offset: float):
        checker_offset(offset)  # the job's sources carry the checker's options as registered
        with session_scope(bench.sessions) as session:
            return resolve_sources(session, spec, params)

    with pytest.raises(JobFailure) as info:
        screen(bench.cache, sources_at(2.0), blocked, [scene()])
    assert info.value.code == "content_blocked" and "1 of 1" in info.value.message
    images, flags = screen(bench.cache, sources_at(-2.0), blocked, [scene()])
    assert flags == [False] and images == [scene()]
