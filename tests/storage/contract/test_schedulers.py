"""The AUTOMATIC1111 sampler names Segmind's scheduler lists leave out ("+19 more")."""

from __future__ import annotations

import random

import pytest

from storage.contract.params import resolve_params
from storage.contract.requests import InpaintRequest
from storage.contract.resolve import resolve_algorithm, resolve_karras
from storage.contract.schedulers import SCHEDULERS, SUPPORTED_NAMES
from storage.contract.specs import BUILTIN
from storage.errors import InvalidInput

SD15 = BUILTIN["sd1.5-inpainting"]
A1111_NAMES = {
    "PLMS": ("PNDMScheduler", {}),
    "DPM fast": ("DPMSolverSinglestepScheduler", {"solver_order": 3}),
    "DPM++ 2M SDE Heun": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"},
    ),
    "DPM++ 2M SDE Heun Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun", "use_karras_sigmas": True},
    ),
    "DPM++ 2M SDE Heun Exponential": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun", "use_exponential_sigmas": True},
    ),
}


def resolve(**fields: object):
    request = InpaintRequest.model_validate({"prompt": "p", "image": "i", "mask": "m", **fields})
    return resolve_params(request, SD15, image_size=(512, 512), rng=random.Random(0))


@pytest.mark.parametrize("name", sorted(A1111_NAMES))
def test_a1111_names_resolve_to_their_diffusers_scheduler(name: str) -> None:
    class_name, options = A1111_NAMES[name]
    assert name in SUPPORTED_NAMES and resolve(scheduler=name).scheduler == name
    assert SCHEDULERS[name].class_name == class_name and SCHEDULERS[name].options == options


@pytest.mark.parametrize("name", ["DPM adaptive", "Restart"])
def test_samplers_diffusers_lacks_are_refused_with_the_accepted_names(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(scheduler=name)
    error = info.value
    assert error.field == "scheduler" and error.value == name and error.limit == SUPPORTED_NAMES
    assert "no diffusers scheduler" in str(error) and "DPM fast" in str(error) and "Heun Karras" in str(error)


def test_an_unknown_name_lists_the_accepted_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve(scheduler="DPM turbo")
    assert info.value.limit == SUPPORTED_NAMES and "PLMS" in str(info.value) and "DPM++ 2M SDE Heun" in str(info.value)


def test_a_request_cannot_contradict_a_named_option() -> None:
    with pytest.raises(InvalidInput, match="exponential sigmas"):
        resolve_karras("DPM++ 2M SDE Heun Exponential", True)
    with pytest.raises(InvalidInput, match="contradicts"):
        resolve_algorithm("DPM++ 2M SDE Heun", "dpmsolver++")
    assert resolve_karras("DPM++ 2M SDE Heun Karras", True) is True
