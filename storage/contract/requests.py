"""The wire body of a job: `InpaintRequest` is the body of `POST /v2/{model}` (Segmind's fields;
other wire formats are adapters onto it). Each model family accepts the subclass that
`REQUEST_CLASSES` names; a field the family does not take is a 400, never ignored.
storage.contract.params turns a request into the job's `JobParams`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints

from storage.contract.schedulers import MAX_STEPS

MAX_SEED = 999_999_999_999_999
MAX_PROMPT_CHARS = 4000
MAX_TRACK_ID_CHARS = 256
MAX_URL_CHARS = 2048

TrackId = (
    Annotated[str, StringConstraints(max_length=MAX_TRACK_ID_CHARS)] | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
)
WebhookEvent = Literal["progress", "completed", "failed"]
NsfwAction = Literal["block", "replace"]
"""What a flagged image does: block (the job FAILS, Segmind) or replace (Stable Diffusion API)."""


class InpaintRequest(BaseModel):
    """Body of POST /v2/{model}, the fields every model takes (erase uses exactly these).

    Images: an http(s) URL, raw base64 or a data URI. mask: white (255) means repaint,
    black (0) means keep; grey is thresholded at 128. Family-specific fields live in the
    subclasses below; a field the model's family does not take is a 400, never ignored.
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
    mask_blur: int = Field(
        0,
        ge=0,
        le=64,
        description="Feather the composite over this many pixels around the mask; 0 keeps unmasked pixels exactly.",
    )
    inpaint_only_masked: bool = Field(
        False,
        description="Inpaint a crop around the mask at the model's "
        "size, then paste it back into the full-size input (A1111's "
        "'only masked').",
    )
    mask_padding: int = Field(
        32, ge=0, le=256, description="With inpaint_only_masked: pixels of context around the mask's bounding box."
    )
    invert_mask: bool = Field(False, description="Repaint the black area and keep the white one.")

    webhook: str | None = Field(
        None, max_length=MAX_URL_CHARS, description="http(s) URL to POST the job's outcome to, signed."
    )
    track_id: TrackId | None = Field(
        None, description="Your id for this job, returned as given (string or integer) in every webhook."
    )
    webhook_events: list[WebhookEvent] | None = Field(
        None,
        max_length=3,
        description='Extra events: ["progress"] adds throttled progress events. Terminal events are always sent.',
    )


class DiffusionRequest(InpaintRequest):
    """A diffusers model (sd15 family: Segmind SD 1.5 inpainting), with the options of the Stable Diffusion
    API enterprise."""

    use_karras_sigmas: bool | None = Field(None, description="Karras sigmas on schedulers that have them.")
    algorithm_type: Literal["dpmsolver++", "dpmsolver+++", "sde-dpmsolver++"] | None = Field(
        None, description="DPM-Solver algorithm (DPM-Solver schedulers only); 'dpmsolver+++' means 'dpmsolver++'."
    )
    clip_skip: int | None = Field(
        None,
        ge=1,
        le=8,
        description="1 uses the text encoder's usual output layer, n skips n-1 more layers (A1111 convention).",
    )
    lora_model: str | None = Field(None, max_length=1000, description="Registered LoRA names, comma-separated.")
    lora_strength: str | float | None = Field(
        None, description="LoRA weights, comma-separated in lora_model's order (one value: all; default 1)."
    )
    vae: str | None = Field(None, max_length=100, description="A registered VAE that replaces the model's.")
    embeddings_model: str | None = Field(
        None, max_length=1000, description="Registered textual-inversion embeddings, comma-separated."
    )
    safety_checker: bool = Field(False, description="Check images for NSFW content; replace flagged ones.")
    safety_checker_type: Literal["blur", "pixelate", "black", "sensitive_content_text"] | None = Field(
        None, description="How a flagged image is replaced (default sensitive_content_text)."
    )
    nsfw_action: NsfwAction | None = Field(
        None,
        description="What an image the safety checker flags does: 'block' ends the job FAILED with "
        "error_code content_blocked (Segmind); 'replace' replaces it and reports it in `nsfw` (Stable "
        "Diffusion API). Default: the key's setting, else the route's API's.",
    )
    enhance_prompt: bool = Field(False, description="Append a quality suffix to the prompt.")
    tomesd: bool | None = Field(None, description="Accepted for compatibility; not applied.")
    loadbalancer: bool | None = Field(None, description="Accepted for compatibility; not applied.")
    temp: bool | None = Field(None, description="Accepted for compatibility; not applied.")
    multi_lingual: bool | None = Field(None, description="Accepted for compatibility; not applied.")


class SDXLRequest(DiffusionRequest):
    """SDXL inpainting (Segmind SDXL inpaint): `base_model` picks among registered SDXL checkpoints."""

    base_model: str | None = Field(
        None,
        max_length=100,
        description="A registered SDXL checkpoint name, "
        "e.g. 'SDXL', 'Real Vision XL', 'Juggernaut XL', 'DreamShaper XL'.",
    )


class ControlNetRequest(SDXLRequest):
    """SDXL ControlNet inpainting (Segmind inpaint-auto). Without a mask the whole image is repainted."""

    # Narrower than the base class on purpose: this family alone may leave the mask out.
    mask: str | None = Field(
        None,
        min_length=1,
        description="Optional: without it the whole image is "  # type: ignore[assignment]
        "repainted under ControlNet guidance.",
    )
    cn_model: str = Field("Canny", max_length=100, description="ControlNet: Canny, Depth, SoftEdge or Openpose.")
    cn_processor: str | None = Field(
        None,
        max_length=100,
        description="Builds the control image: canny, depth, normal_map, mlsd, scribble_xdog, "
        "lineart_standard, binary, invert, color, shuffle or none (the image as given); docs/fields.md "
        "lists the mapped and unavailable names. Default, and what any other name runs (listed in "
        "meta.not_applied): canny for Canny, depth for Depth, none otherwise.",
    )


REQUEST_CLASSES: dict[str, type[InpaintRequest]] = {
    "erase": InpaintRequest,
    "sd15": DiffusionRequest,
    "sdxl": SDXLRequest,
    "sdxl-controlnet": ControlNetRequest,
}
"""The body each model family accepts."""
