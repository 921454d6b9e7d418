"""Loading the models a job uses beside its pipeline: VAEs, ControlNets, depth estimators, safety checkers.

Each is loaded once through the resident cache (worker.components). A name whose
weights cannot be found fails the job with `model_unavailable`, saying which.
"""

from __future__ import annotations

from typing import Any

from worker.components import NamedSource
from worker.control import DepthEstimator
from worker.diffusion import dtype_for, from_pretrained, quiet_loaders, resolve_device
from worker.safety import SafetyChecker


def load_vae(named: NamedSource, device: str) -> Any:
    from diffusers import AutoencoderKL

    quiet_loaders()
    target = resolve_device(device)
    return from_pretrained(AutoencoderKL, named.source, f"vae {named.name!r}", dtype=dtype_for(target)).to(
        target
    )


def load_controlnet(named: NamedSource, device: str) -> Any:
    from diffusers import ControlNetModel

    quiet_loaders()
    target = resolve_device(device)
    net = from_pretrained(
        ControlNetModel, named.source, f"cn_model {named.name!r}", dtype=dtype_for(target)
    )
    return net.to(target)


def load_depth_estimator(named: NamedSource, device: str) -> DepthEstimator:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    quiet_loaders()
    what = f"depth estimator {named.name!r}"
    model = from_pretrained(AutoModelForDepthEstimation, named.source, what)
    processor = from_pretrained(AutoImageProcessor, named.source, what)
    return DepthEstimator(model.to(resolve_device(device)).eval(), processor)


def load_safety_checker(named: NamedSource, device: str) -> SafetyChecker:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    quiet_loaders()
    what = f"safety checker {named.name!r}"
    model = from_pretrained(StableDiffusionSafetyChecker, named.source, what)
    processor = from_pretrained(CLIPImageProcessor, named.source, what)
    return SafetyChecker(model.to(resolve_device(device)).eval(), processor)
