"""Scheduler names accepted on the wire and the diffusers scheduler each one builds.

This is data only (the API never imports diffusers); worker.engine.schedulers turns a
spec into a scheduler. The names are the Segmind ones (inpaint-auto, SDXL inpaint,
SD 1.5 inpainting), the AUTOMATIC1111 ones Segmind's lists leave out, and the
diffusers class names of the Stable Diffusion API enterprise. A few names cannot
drive an inpainting pipeline (three of those classes; two A1111 samplers diffusers
lacks); they are listed with the reason, and a request naming one gets a 400 that
says it and lists the accepted names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    class_name: str
    options: dict[str, Any] = field(default_factory=dict)
    unsupported_reason: str | None = None


def _spec(name: str, class_name: str, **options: Any) -> SchedulerSpec:
    return SchedulerSpec(name=name, class_name=class_name, options=options)


KARRAS = {"use_karras_sigmas": True}
SDE = {"algorithm_type": "sde-dpmsolver++"}

_SEGMIND = [
    _spec("DDIM", "DDIMScheduler"),
    _spec("DDPM", "DDPMScheduler"),
    _spec("PNDM", "PNDMScheduler"),
    _spec("Euler", "EulerDiscreteScheduler"),
    _spec("Euler Karras", "EulerDiscreteScheduler", **KARRAS),
    _spec("Euler a", "EulerAncestralDiscreteScheduler"),
    _spec("LMS", "LMSDiscreteScheduler"),
    _spec("LMS Karras", "LMSDiscreteScheduler", **KARRAS),
    _spec("Heun", "HeunDiscreteScheduler"),
    _spec("Heun Karras", "HeunDiscreteScheduler", **KARRAS),
    _spec("DPM Multi", "DPMSolverMultistepScheduler"),
    _spec("DPM Single", "DPMSolverSinglestepScheduler"),
    _spec("DPM2", "KDPM2DiscreteScheduler"),
    _spec("DPM2 Karras", "KDPM2DiscreteScheduler", **KARRAS),
    _spec("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    _spec("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", **KARRAS),
    _spec("DPM++ 2M", "DPMSolverMultistepScheduler"),
    _spec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", **KARRAS),
    _spec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", **SDE),
    _spec("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", **SDE, **KARRAS),
    _spec("DPM++ 2M SDE Exponential", "DPMSolverMultistepScheduler", **SDE, use_exponential_sigmas=True),
    _spec("DPM++ 3M SDE", "DPMSolverMultistepScheduler", **SDE, solver_order=3),
    _spec("DPM++ 3M SDE Karras", "DPMSolverMultistepScheduler", **SDE, solver_order=3, **KARRAS),
    _spec(
        "DPM++ 3M SDE Exponential", "DPMSolverMultistepScheduler", **SDE, solver_order=3, use_exponential_sigmas=True
    ),
    _spec("DPM++ SDE", "DPMSolverSinglestepScheduler"),
    _spec("DPM++ SDE Karras", "DPMSolverSinglestepScheduler", **KARRAS),
    _spec("DPM++ 2S a", "DPMSolverSinglestepScheduler"),
    _spec("DPM++ 2S a Karras", "DPMSolverSinglestepScheduler", **KARRAS),
    _spec("DEIS", "DEISMultistepScheduler"),
    _spec("UniPC", "UniPCMultistepScheduler"),
    _spec("UniPC Karras", "UniPCMultistepScheduler", **KARRAS),
    _spec("LCM", "LCMScheduler"),
]

# AUTOMATIC1111 sampler names that Segmind's list does not show (it ends in "+19 more").
# DPM fast is k-diffusion's DPM-Solver-fast: single-step DPM-Solver of third order with lower-order
# final steps. diffusers' single-step solver runs that schedule; it keeps only the data-prediction
# form (DPM-Solver++; the original form is deprecated there), and spaces steps in timesteps where
# k-diffusion spaces them in log-SNR: the nearest, not the same sampler.
HEUN_SDE = {**SDE, "solver_type": "heun"}
_A1111 = [
    _spec("PLMS", "PNDMScheduler"),
    _spec("DPM fast", "DPMSolverSinglestepScheduler", solver_order=3),
    _spec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", **HEUN_SDE),
    _spec("DPM++ 2M SDE Heun Karras", "DPMSolverMultistepScheduler", **HEUN_SDE, **KARRAS),
    _spec("DPM++ 2M SDE Heun Exponential", "DPMSolverMultistepScheduler", **HEUN_SDE, use_exponential_sigmas=True),
]

_DIFFUSERS_CLASSES = [
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "IPNDMScheduler",
    "LCMScheduler",
]

_UNSUPPORTED = [
    SchedulerSpec(
        "DDIMInverseScheduler",
        "DDIMInverseScheduler",
        unsupported_reason="it inverts images into noise; it cannot sample an inpainting",
    ),
    SchedulerSpec(
        "KarrasVeScheduler",
        "KarrasVeScheduler",
        unsupported_reason="it is for variance-exploding unconditional models and was removed from diffusers",
    ),
    SchedulerSpec(
        "ScoreSdeVeScheduler",
        "ScoreSdeVeScheduler",
        unsupported_reason="it is for variance-exploding score models, not Stable Diffusion's latent models",
    ),
    # AUTOMATIC1111 samplers that no diffusers scheduler implements. A substitute would
    # silently run another sampler, and Segmind's answer has no field to say so.
    SchedulerSpec(
        "DPM adaptive",
        "DPMSolverSinglestepScheduler",
        unsupported_reason="it picks its own number of steps by error control, which no diffusers scheduler "
        "does; 'DPM fast' is the same solver at num_inference_steps",
    ),
    SchedulerSpec(
        "Restart",
        "HeunDiscreteScheduler",
        unsupported_reason="it re-noises and re-solves intervals of the schedule, which no diffusers scheduler "
        "does; 'Heun Karras' runs its inner solver",
    ),
]

SCHEDULERS: dict[str, SchedulerSpec] = {
    spec.name: spec for spec in [*_SEGMIND, *_A1111, *(_spec(c, c) for c in _DIFFUSERS_CLASSES), *_UNSUPPORTED]
}

# Stable Diffusion's schedules have 1000 training steps; with the "leading" spacing and
# steps_offset of their configs, 1000 inference steps would index step 1000 and fail.
MAX_STEPS = 500

# Classes that run a distilled schedule: at most this many steps x strength (LCM's 50 original steps).
STEP_BUDGETS: dict[str, int] = {"LCMScheduler": 50}

SUPPORTED_NAMES: list[str] = [name for name, spec in SCHEDULERS.items() if spec.unsupported_reason is None]


def find_scheduler(name: str) -> SchedulerSpec | None:
    return SCHEDULERS.get(name)


# Scheduler classes whose constructor takes `use_karras_sigmas` (checked against diffusers by a test).
KARRAS_CLASSES: frozenset[str] = frozenset(
    {
        "DEISMultistepScheduler",
        "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "EulerDiscreteScheduler",
        "HeunDiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "LMSDiscreteScheduler",
        "UniPCMultistepScheduler",
    }
)
# Scheduler classes that take `algorithm_type`, and the values this service lets a request set.
# Scheduler classes without `add_noise`: they cannot start from a partly noised image, so they run
# only at strength 1 on SD 1.5 inpainting models (SDXL's inpainting keeps noising the known latents).
NO_ADD_NOISE_CLASSES: frozenset[str] = frozenset({"IPNDMScheduler"})
ALGORITHM_CLASSES: frozenset[str] = frozenset({"DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"})
ALGORITHM_TYPES: dict[str, str] = {
    "dpmsolver++": "dpmsolver++",
    "dpmsolver+++": "dpmsolver++",  # the Stable Diffusion API enterprise spells it with three plus signs
    "sde-dpmsolver++": "sde-dpmsolver++",
}


def names_of_classes(classes: frozenset[str]) -> list[str]:
    """The supported scheduler names that build one of `classes`."""
    return [n for n in SUPPORTED_NAMES if SCHEDULERS[n].class_name in classes]
