"""The one contract of a job's parameters.

`resolve_params` turns a request (storage.contract.requests), with the model's spec,
the input's size and the registered asset names, into `JobParams`: every value
concrete and in range, the seed drawn if it was -1. `JobParams` is what the job
row stores and what the worker reads back. Nothing here mutates a request in a
validator.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from storage.contract.assets import AssetCatalog
from storage.contract.processors import processor_applies, resolve_processor
from storage.contract.requests import (
    MAX_SEED,
    ControlNetRequest,
    DiffusionRequest,
    InpaintRequest,
    NsfwAction,
    SDXLRequest,
)
from storage.contract.resolve import (
    NOT_APPLIED,
    check_name,
    check_scheduler_fits,
    enhance,
    karras_applies,
    resolve_algorithm,
    resolve_karras,
    resolve_loras,
    split_names,
)
from storage.contract.schedulers import SCHEDULERS, STEP_BUDGETS, SUPPORTED_NAMES, find_scheduler
from storage.contract.specs import ModelSpec, Range
from storage.errors import InvalidInput


class LoraUse(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    weight: float


class AdapterParams(BaseModel):
    """Loaded onto the resident pipeline for one job and removed after it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loras: tuple[LoraUse, ...] = ()
    vae: str | None = None
    embeddings: tuple[str, ...] = ()
    clip_skip: int | None = Field(None, description="A1111 convention: 1 = no skip.")


class MaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    blur: int = 0
    only_masked: bool = False
    padding: int = 32
    invert: bool = False


class ControlParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    processor: str


class JobParams(BaseModel):
    """What the worker runs: concrete, in range, seed resolved. Stored as the job's params.

    `prompt` is the prompt as used (with the enhance_prompt suffix when asked for).
    `safety` is the replacement type when the safety checker is on, else None; `nsfw_action`
    says whether a flagged image is replaced by it or fails the job (storage.contract.content).
    `ignored` names the accepted-but-not-applied fields the request set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    negative_prompt: str | None
    samples: int
    scheduler: str
    num_inference_steps: int
    guidance_scale: float
    strength: float
    seed: int
    width: int
    height: int
    use_karras_sigmas: bool | None = None
    algorithm_type: str | None = None
    base_model: str | None = None
    control: ControlParams | None = None
    adapters: AdapterParams = AdapterParams()
    mask: MaskParams = MaskParams()
    safety: str | None = None
    nsfw_action: NsfwAction = "replace"
    enhance_prompt: bool = False
    ignored: tuple[str, ...] = ()

    def seeds(self) -> list[int]:
        """Image i of the job uses seed + i."""
        return [self.seed + i for i in range(self.samples)]


def _in_range(field: str, value: float | None, rng: Range, *, of: str, integer: bool = False) -> float:
    """`value` (None: the default) within `rng`; the 400 names `of`, whose range it is."""
    if value is None:
        return rng.default
    if not rng.min <= value <= rng.max:
        shown = (int(rng.min), int(rng.max)) if integer else (rng.min, rng.max)
        raise InvalidInput(
            field,
            f"must be between {shown[0]} and {shown[1]} for {of}, got {value}",
            limit=list(shown),
            value=value,
        )
    return value


def _resolve_size(request: InpaintRequest, spec: ModelSpec, image_size: tuple[int, int]) -> tuple[int, int]:
    width, height = request.width, request.height
    for field, side in (("img_width", width), ("img_height", height)):
        if side is not None and not spec.accepts_size(side):
            raise InvalidInput(
                field,
                f"must be {spec.size_rule()} for {spec.ranges_of}, got {side}",
                limit=spec.size_rule(),
                value=side,
            )
    if width is not None and height is not None:
        return width, height
    iw, ih = image_size
    if spec.default_size is None or (spec.accepts_size(iw) and spec.accepts_size(ih)):
        native = (iw, ih)
    else:
        native = (spec.default_size, spec.default_size)
    return width or native[0], height or native[1]


def _resolve_scheduler(name: str | None, spec: ModelSpec) -> str:
    name = name or spec.default_scheduler
    found = find_scheduler(name)
    if found is None:
        raise InvalidInput(
            "scheduler",
            f"unknown scheduler {name!r}; valid names: {', '.join(SUPPORTED_NAMES)}",
            limit=SUPPORTED_NAMES,
            value=name,
        )
    if found.unsupported_reason:
        raise InvalidInput(
            "scheduler",
            f"{name!r} is not supported: {found.unsupported_reason}; valid names: {', '.join(SUPPORTED_NAMES)}",
            limit=SUPPORTED_NAMES,
            value=name,
        )
    return name


def _check_step_budget(scheduler: str, steps: int, strength: float) -> None:
    """Steps beyond a distilled schedule (LCM: STEP_BUDGETS x strength); MAX_STEPS is the field's own limit."""
    budget = STEP_BUDGETS.get(SCHEDULERS[scheduler].class_name)
    if budget is not None and steps > (limit := int(budget * strength)):
        raise InvalidInput(
            "num_inference_steps",
            f"{scheduler} can run at most {limit} steps at strength {strength:g}, got {steps}",
            limit=limit,
            value=steps,
        )


def _check_steps_run(steps: int, strength: float) -> None:
    """Diffusers runs int(steps * strength) denoising steps; zero would be an error on the worker."""
    if int(steps * strength) < 1:
        raise InvalidInput(
            "strength",
            f"with num_inference_steps={steps}, strength {strength} runs no "
            f"denoising step; it must be at least {1 / steps:.3g}",
            limit=1 / steps,
            value=strength,
        )


def _resolve_mask(request: InpaintRequest) -> MaskParams:
    given = request.model_fields_set
    if "mask_padding" in given and not request.inpaint_only_masked:
        raise InvalidInput("mask_padding", "only applies with inpaint_only_masked: true", value=request.mask_padding)
    if request.invert_mask and request.mask is None:
        raise InvalidInput(
            "invert_mask", "needs a mask: without one the whole image is repainted", value=request.invert_mask
        )
    return MaskParams(
        blur=request.mask_blur,
        only_masked=request.inpaint_only_masked,
        padding=request.mask_padding,
        invert=request.invert_mask,
    )


def _resolve_adapters(request: DiffusionRequest, catalog: AssetCatalog, family: str) -> AdapterParams:
    loras = resolve_loras(request.lora_model, request.lora_strength, catalog, family)
    embeddings = split_names(request.embeddings_model or "")
    for name in embeddings:
        check_name("embeddings_model", "embeddings", name, catalog, family)
    return AdapterParams(
        loras=tuple(LoraUse(name=n, weight=w) for n, w in loras),
        vae=check_name("vae", "vae", request.vae, catalog, family) if request.vae else None,
        embeddings=tuple(dict.fromkeys(embeddings)),
        clip_skip=request.clip_skip,
    )


def _resolve_diffusion(
    request: DiffusionRequest, spec: ModelSpec, scheduler: str, strength: float, catalog: AssetCatalog
) -> dict[str, Any]:
    """The fields only diffusers models take."""
    family = "sdxl" if spec.is_sdxl else "sd15"
    check_scheduler_fits(scheduler, strength, family)
    if request.safety_checker_type is not None and not request.safety_checker:
        raise InvalidInput(
            "safety_checker_type", "only applies with safety_checker: yes", value=request.safety_checker_type
        )
    resolved: dict[str, Any] = {
        "prompt": enhance(request.prompt) if request.enhance_prompt else request.prompt,
        "enhance_prompt": request.enhance_prompt,
        "use_karras_sigmas": resolve_karras(scheduler, request.use_karras_sigmas),
        "algorithm_type": resolve_algorithm(scheduler, request.algorithm_type),
        "adapters": _resolve_adapters(request, catalog, family),
        "safety": request.safety_checker_type or "sensitive_content_text" if request.safety_checker else None,
        "ignored": tuple(f for f in NOT_APPLIED if getattr(request, f) is not None)
        + (() if karras_applies(scheduler, request.use_karras_sigmas) else ("use_karras_sigmas",)),
    }
    if isinstance(request, SDXLRequest):
        name = request.base_model or spec.base_model
        resolved["base_model"] = name and check_name("base_model", "base_model", name, catalog, family)
    if isinstance(request, ControlNetRequest):
        resolved["control"] = ControlParams(
            model=check_name("cn_model", "controlnet", request.cn_model, catalog, family),
            processor=resolve_processor(request.cn_model, request.cn_processor),
        )
        if not processor_applies(request.cn_processor):
            resolved["ignored"] += ("cn_processor",)
    return resolved


def resolve_params(
    request: InpaintRequest,
    spec: ModelSpec,
    *,
    image_size: tuple[int, int],
    rng: random.Random,
    catalog: AssetCatalog | None = None,
) -> JobParams:
    """Apply the model's defaults and ranges; draw the seed. Raises InvalidInput naming the field."""
    if request.samples > spec.max_samples:
        raise InvalidInput(
            "samples",
            f"must be at most {spec.max_samples} for {spec.ranges_of}, got {request.samples}",
            limit=spec.max_samples,
            value=request.samples,
        )
    width, height = _resolve_size(request, spec, image_size)
    steps = int(
        _in_range("num_inference_steps", request.num_inference_steps, spec.steps, of=spec.ranges_of, integer=True)
    )
    strength = _in_range("strength", request.strength, spec.strength, of=spec.ranges_of)
    _check_steps_run(steps, strength)
    scheduler = _resolve_scheduler(request.scheduler, spec)
    _check_step_budget(scheduler, steps, strength)
    fields: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "samples": request.samples,
        "scheduler": scheduler,
        "num_inference_steps": steps,
        "guidance_scale": _in_range("guidance_scale", request.guidance_scale, spec.guidance_scale, of=spec.ranges_of),
        "strength": strength,
        "seed": request.seed if request.seed >= 0 else rng.randint(0, MAX_SEED - request.samples),
        "width": width,
        "height": height,
        "mask": _resolve_mask(request),
    }
    if isinstance(request, DiffusionRequest):
        fields.update(_resolve_diffusion(request, spec, scheduler, strength, catalog or AssetCatalog([])))
    return JobParams(**fields)
