"""Loading the models a job uses beside its pipeline: VAEs, ControlNets, depth estimators, annotator networks
and safety checkers.

Each is loaded once through the resident cache (worker.engine.components). A name whose
weights cannot be found fails the job with `model_unavailable`, saying which.
"""

from __future__ import annotations

from typing import Any

from diffusers import AutoencoderKL, ControlNetModel
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import AutoImageProcessor, AutoModelForDepthEstimation, CLIPImageProcessor

from worker.engine.control import DepthEstimator
from worker.engine.control.annotators import LoadedAnnotator
from worker.engine.control.annotators import load_annotator as load_annotator_files
from worker.engine.diffusion import dtype_for, from_pretrained, quiet_loaders, resolve_device
from worker.engine.safety import SafetyChecker
from worker.engine.types import AnnotatorSource, NamedSource


def load_vae(named: NamedSource, device: str) -> Any:
    quiet_loaders()
    target = resolve_device(device)
    return from_pretrained(AutoencoderKL, named.source, f"vae {named.name!r}", dtype=dtype_for(target)).to(target)


def load_controlnet(named: NamedSource, device: str) -> Any:
    quiet_loaders()
    target = resolve_device(device)
    net = from_pretrained(ControlNetModel, named.source, f"cn_model {named.name!r}", dtype=dtype_for(target))
    return net.to(target)


def load_with_processor(model_cls: Any, processor_cls: Any, named: NamedSource, device: str, what: str) -> Any:
    """(model on `device`, in eval mode; its image processor), both from `named.source`, in fp32."""
    quiet_loaders()
    model = from_pretrained(model_cls, named.source, f"{what} {named.name!r}")
    processor = from_pretrained(processor_cls, named.source, f"{what} {named.name!r}")
    return model.to(resolve_device(device)).eval(), processor


def load_depth_estimator(named: NamedSource, device: str) -> DepthEstimator:
    loaded = load_with_processor(AutoModelForDepthEstimation, AutoImageProcessor, named, device, "depth estimator")
    return DepthEstimator(*loaded)


def load_annotator(source: AnnotatorSource, device: str) -> LoadedAnnotator:
    quiet_loaders()
    return load_annotator_files(source, resolve_device(device))


def load_safety_checker(named: NamedSource, device: str) -> SafetyChecker:
    loaded = load_with_processor(StableDiffusionSafetyChecker, CLIPImageProcessor, named, device, "safety checker")
    return SafetyChecker(*loaded)
