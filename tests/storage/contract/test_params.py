"""Resolving a request against a model's spec: defaults, ranges, sizes, seeds."""

from __future__ import annotations

import random

import pytest

from storage.contract.params import resolve_params
from storage.contract.requests import InpaintRequest
from storage.contract.schedulers import SCHEDULERS, SUPPORTED_NAMES
from storage.contract.specs import BUILTIN
from storage.errors import InvalidInput

SD15 = BUILTIN["sd1.5-inpainting"]
ERASE = BUILTIN["erase"]


def request(**fields: object) -> InpaintRequest:
    return InpaintRequest.model_validate({"prompt": "p", "image": "i", "mask": "m", **fields})


def test_defaults_follow_the_seed_document() -> None:
    params = resolve_params(request(seed=5), SD15, image_size=(640, 480), rng=random.Random(0))
    assert (params.width, params.height) == (512, 512), "an input size the model refuses falls back to 512"
    assert params.num_inference_steps == 20 and params.guidance_scale == 7.5 and params.strength == 1
    assert params.scheduler == "DDIM" and params.seed == 5 and params.seeds() == [5]


def test_allowed_input_size_is_kept() -> None:
    params = resolve_params(request(), SD15, image_size=(768, 512), rng=random.Random(0))
    assert (params.width, params.height) == (768, 512)


def test_erase_keeps_the_input_size() -> None:
    params = resolve_params(request(), ERASE, image_size=(333, 217), rng=random.Random(0))
    assert (params.width, params.height) == (333, 217)


def test_seed_minus_one_is_drawn_and_samples_get_consecutive_seeds() -> None:
    params = resolve_params(request(seed=-1, samples=3), SD15, image_size=(512, 512), rng=random.Random(42))
    assert params.seed >= 0
    assert params.seeds() == [params.seed, params.seed + 1, params.seed + 2]


def test_width_alias() -> None:
    assert request(width=768).width == 768 and request(img_width=512).width == 512


def test_error_names_field_limit_and_value() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_params(request(num_inference_steps=5), SD15, image_size=(512, 512), rng=random.Random(0))
    assert info.value.field == "num_inference_steps"
    assert info.value.limit == [20, 100] and info.value.value == 5


def test_every_supported_scheduler_name_resolves() -> None:
    for name in SUPPORTED_NAMES:
        assert (
            resolve_params(request(scheduler=name), SD15, image_size=(512, 512), rng=random.Random(0)).scheduler == name
        )
    assert len(SCHEDULERS) > len(SUPPORTED_NAMES), "the unsupported names are listed too, with reasons"
