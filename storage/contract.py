"""The one contract of a job's parameters.

`InpaintRequest` is the wire body of `POST /v2/{model}` (Segmind's fields; other
wire formats are adapters onto it). `resolve_params` turns it, with the model's
spec and the input's size, into `JobParams`: every value concrete and in range,
the seed drawn if it was -1. `JobParams` is what the job row stores and what
the worker reads back. Nothing here mutates a request in a validator.
"""

from __future__ import annotations

import random
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints

from storage.errors import InvalidInput
from storage.registry import ModelSpec, Range
from storage.schedulers import MAX_STEPS, SUPPORTED_NAMES, find_scheduler

MAX_SEED = 999_999_999_999_999
MAX_PROMPT_CHARS = 4000
MAX_TRACK_ID_CHARS = 256
MAX_URL_CHARS = 2048

TrackId = Annotated[str, StringConstraints(max_length=MAX_TRACK_ID_CHARS)] | Annotated[
    int, Field(ge=-(2**63), le=2**63 - 1)
]
WebhookEvent = Literal["progress", "completed", "failed"]


class InpaintRequest(BaseModel):
    """Body of POST /v2/{model}. Images: an http(s) URL, raw base64 or a data URI.

    mask: white (255) means repaint, black (0) means keep; grey is thresholded at 128.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What to paint in the mask.")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    image: str = Field(min_length=1, description="Input image: http(s) URL, base64 or data URI.")
    mask: str = Field(min_length=1, description="Mask: white repaints, black keeps. Resized to the image.")
    samples: int = Field(1, ge=1, le=4, description="Images to generate, 1-4.")
    scheduler: str | None = Field(None, description="Scheduler name; see GET /v2/schedulers.")
    num_inference_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Denoising steps; range per model.")
    guidance_scale: float | None = Field(None, ge=0, description="Classifier-free guidance; range per model.")
    strength: float | None = Field(None, ge=0, le=1, description="How much the masked area changes.")
    seed: int = Field(-1, ge=-1, le=MAX_SEED, description="-1 draws a random seed; image i uses seed + i.")
    width: int | None = Field(
        None, ge=8, validation_alias=AliasChoices("img_width", "width"), description="Output width."
    )
    height: int | None = Field(
        None, ge=8, validation_alias=AliasChoices("img_height", "height"), description="Output height."
    )
    base64: bool = Field(False, description="Return the images inline as base64 instead of URLs.")
    webhook: str | None = Field(
        None, max_length=MAX_URL_CHARS, description="http(s) URL to POST the job's outcome to, signed."
    )
    track_id: TrackId | None = Field(
        None, description="Your id for this job, returned as given (string or integer) in every webhook."
    )
    webhook_events: list[WebhookEvent] | None = Field(
        None, max_length=3,
        description='Extra events: ["progress"] adds throttled progress events. Terminal events are always sent.',
    )


class JobParams(BaseModel):
    """What the worker runs: concrete, in range, seed resolved. Stored as the job's params."""

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

    def seeds(self) -> list[int]:
        """Image i of the job uses seed + i."""
        return [self.seed + i for i in range(self.samples)]


def _in_range(field: str, value: float | None, rng: Range, *, integer: bool = False) -> float:
    if value is None:
        return rng.default
    if not rng.min <= value <= rng.max:
        shown = (int(rng.min), int(rng.max)) if integer else (rng.min, rng.max)
        raise InvalidInput(
            field,
            f"must be between {shown[0]} and {shown[1]} for this model, got {value}",
            limit=list(shown),
            value=value,
        )
    return value


def _resolve_size(request: InpaintRequest, spec: ModelSpec, image_size: tuple[int, int]) -> tuple[int, int]:
    width, height = request.width, request.height
    for field, side in (("img_width", width), ("img_height", height)):
        if side is not None and not spec.accepts_size(side):
            raise InvalidInput(field, f"must be {spec.size_rule()} for this model, got {side}",
                               limit=spec.size_rule(), value=side)
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
            "scheduler", f"unknown scheduler {name!r}; valid names: {', '.join(SUPPORTED_NAMES)}",
            limit=SUPPORTED_NAMES, value=name,
        )
    if found.unsupported_reason:
        raise InvalidInput("scheduler", f"{name!r} is not supported: {found.unsupported_reason}", value=name)
    return name


def _check_step_budget(scheduler: str, steps: int, strength: float) -> None:
    """Steps a scheduler cannot run (more than the default cap, or LCM's distilled schedule x strength)."""
    budget = find_scheduler(scheduler).step_budget  # resolved above: it exists
    limit = min(MAX_STEPS, int(budget * strength)) if budget else MAX_STEPS
    if steps > limit:
        raise InvalidInput("num_inference_steps",
                           f"{scheduler} can run at most {limit} steps at strength {strength:g}, got {steps}",
                           limit=limit, value=steps)


def resolve_params(
    request: InpaintRequest, spec: ModelSpec, *, image_size: tuple[int, int], rng: random.Random
) -> JobParams:
    """Apply the model's defaults and ranges; draw the seed. Raises InvalidInput naming the field."""
    if request.samples > spec.max_samples:
        raise InvalidInput("samples", f"must be at most {spec.max_samples} for this model, got {request.samples}",
                           limit=spec.max_samples, value=request.samples)
    width, height = _resolve_size(request, spec, image_size)
    steps = int(_in_range("num_inference_steps", request.num_inference_steps, spec.steps, integer=True))
    scheduler = _resolve_scheduler(request.scheduler, spec)
    strength = _in_range("strength", request.strength, spec.strength)
    _check_step_budget(scheduler, steps, strength)
    return JobParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        samples=request.samples,
        scheduler=scheduler,
        num_inference_steps=steps,
        guidance_scale=_in_range("guidance_scale", request.guidance_scale, spec.guidance_scale),
        strength=strength,
        seed=request.seed if request.seed >= 0 else rng.randint(0, MAX_SEED - request.samples),
        width=width,
        height=height,
    )
