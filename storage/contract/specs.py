"""What a model slug is and accepts (`ModelSpec`), and the built-in slugs.

Slugs registered at run time (`inpaint-admin models register`, or a tiny test
pipeline) live in the `models` table (storage.database.registry), which every
process reads, and may override a built-in: pointing `sd1.5-inpainting` at a
local directory is how an offline machine serves it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage.contract.sources import SHA256_PATTERN, is_single_file

Family = Literal["sd15", "sdxl", "sdxl-controlnet", "erase"]
FAMILIES: tuple[str, ...] = ("sd15", "sdxl", "sdxl-controlnet", "erase")
DIFFUSION_FAMILIES: tuple[str, ...] = ("sd15", "sdxl", "sdxl-controlnet")


class Range(BaseModel):
    model_config = ConfigDict(frozen=True)

    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"need min <= default <= max, got {self.min}, {self.default}, {self.max}")
        return self


class ModelSpec(BaseModel):
    """What a model slug is and accepts. Ranges follow the hosted API that documents the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    family: Family
    source: str = Field(
        "",
        description="Hugging Face hub id, local directory, or single-file checkpoint (a local .safetensors "
        "file or an http(s) URL, storage.contract.sources); empty for erase, and for SDXL slugs whose "
        "weights come from `base_model`.",
    )
    sha256: str | None = Field(
        None,
        pattern=SHA256_PATTERN,
        description="Single-file sources: the checkpoint's SHA-256 (hex), checked before it is used.",
    )
    config: str | None = Field(
        None,
        min_length=1,
        description="Single-file sources: a hub id or local diffusers directory (model_index.json and the "
        "component configs and tokenizers) that describes the checkpoint; None: diffusers infers it, "
        "which needs the Hugging Face hub.",
    )
    base_model: str | None = Field(
        None,
        description="SDXL families: the registered base_model used when a request names none "
        "(storage.contract.assets); None uses `source`.",
    )
    queue: str = "inpaint"
    sizes: tuple[int, ...] | None = Field(
        None, description="Allowed values of width and height; None: any multiple of 8 up to max_side."
    )
    max_side: int = 1024
    default_size: int | None = Field(
        512, description="Width and height when the request names none and the input's size is not allowed."
    )
    steps: Range = Range(min=20, max=100, default=20)
    guidance_scale: Range = Range(min=0.1, max=25, default=7.5)
    strength: Range = Range(min=0.1, max=1, default=1)
    default_scheduler: str = "DDIM"
    max_samples: int = 4
    ranges_of: str = Field(
        "this model",
        description='Whose ranges these are, for messages ("must be between 1 and 50 for <ranges_of>"): '
        "the model's own (Segmind's for the built-in models), or a hosted API's on that API's routes.",
    )

    @model_validator(mode="after")
    def _has_weights(self) -> ModelSpec:
        if self.family in DIFFUSION_FAMILIES and not (self.source or self.base_model):
            raise ValueError(f"a {self.family} model needs a source or a base_model")
        if (self.sha256 or self.config) and not is_single_file(self.source):
            raise ValueError("sha256 and config describe a single-file checkpoint: a .safetensors path or a URL")
        return self

    @property
    def is_sdxl(self) -> bool:
        return self.family in ("sdxl", "sdxl-controlnet")

    def accepts_size(self, side: int) -> bool:
        if self.sizes is not None:
            return side in self.sizes
        return side % 8 == 0 and 8 <= side <= self.max_side

    def size_rule(self) -> str:
        if self.sizes is not None:
            return "one of " + ", ".join(str(s) for s in self.sizes)
        return f"a multiple of 8 from 8 to {self.max_side}"


class ApiRanges(BaseModel):
    """The ranges a hosted API documents for its own routes, applied there instead of the model's.

    A model's `steps`, size and strength ranges follow the API that documents the model (Segmind);
    another API's routes promise their own. `apply` gives the spec those routes validate against:
    the API's limits wherever the pipeline can run the value (diffusers runs any step count and any
    multiple of 8), the model's own limit where it is narrower than the API's (its max_side), and
    the model's defaults, clamped into the API's range.
    """

    model_config = ConfigDict(frozen=True)

    api: str = Field(description="The API whose documents give these ranges, for messages.")
    steps: tuple[int, int]
    guidance_scale: tuple[float, float]
    strength: tuple[float, float]
    max_side: int = Field(description="Width and height: any multiple of 8 from 8 up to this.")

    def apply(self, spec: ModelSpec) -> ModelSpec:
        def within(limits: tuple[float, float], own: Range) -> Range:
            low, high = limits
            return Range(min=low, max=high, default=min(max(own.default, low), high))

        return spec.model_copy(
            update={
                "steps": within(self.steps, spec.steps),
                "guidance_scale": within(self.guidance_scale, spec.guidance_scale),
                "strength": within(self.strength, spec.strength),
                "sizes": None,
                "max_side": min(self.max_side, spec.max_side),
                "ranges_of": f"{spec.slug} on the {self.api} routes",
            }
        )


def segmind_sdxl(slug: str, family: Family, *, base_model: str, scheduler: str) -> ModelSpec:
    """The ranges of Segmind's SDXL pages (Segmind inpaint-auto, Segmind SDXL inpaint). Their documented
    strength default (7.5) is a copy of guidance_scale's; the examples' 0.9 is used instead."""
    return ModelSpec(
        slug=slug,
        family=family,
        base_model=base_model,
        sizes=None,
        max_side=1024,
        default_size=1024,
        steps=Range(min=20, max=100, default=25),
        guidance_scale=Range(min=1, max=25, default=7.5),
        strength=Range(min=0, max=0.99, default=0.9),
        default_scheduler=scheduler,
    )


BUILTIN: dict[str, ModelSpec] = {
    spec.slug: spec
    for spec in [
        ModelSpec(
            slug="sd1.5-inpainting",
            family="sd15",
            source="stable-diffusion-v1-5/stable-diffusion-inpainting",
            sizes=(512, 768),
        ),
        # Segmind SDXL inpaint.
        segmind_sdxl("sdxl-inpaint", "sdxl", base_model="SDXL", scheduler="DPM2 Karras"),
        # Segmind inpaint-auto (SDXL ControlNet inpaint); mask optional.
        segmind_sdxl("inpaint-auto", "sdxl-controlnet", base_model="Real Vision XL", scheduler="DPM++ 2M SDE Karras"),
        ModelSpec(
            slug="erase",
            family="erase",
            sizes=None,
            max_side=4096,
            default_size=None,
            steps=Range(min=1, max=100, default=20),
        ),
    ]
}
