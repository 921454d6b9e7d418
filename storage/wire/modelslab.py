"""The ModelsLab v6 inpaint / Stable Diffusion API enterprise wire format, as an adapter onto the one
job contract: its request bodies become Segmind-style bodies, and a job becomes its answers.

Shared by the API routes and the webhook worker, so an answer and a webhook say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.contract.requests import REQUEST_CLASSES
from storage.contract.specs import ApiRanges
from storage.database.models import Job, JobStatus

FORMAT = "modelslab"
DEFAULT_MODEL = "sd1.5-inpainting"
RENAMED = {"init_image": "image", "mask_image": "mask", "steps": "num_inference_steps"}
ROUTE_FIELDS = {"key", "model_id", "instant_response", "request_id"}
# That API's defaults where ours differ (Stable Diffusion API enterprise, ModelsLab v6 inpaint).
DEFAULTS = {"enhance_prompt": True}
TRUTHY = {"yes", "true", "1", "on"}

RANGES = ApiRanges(
    api="ModelsLab v6 inpaint / Stable Diffusion API enterprise",
    steps=(1, 50),  # Stable Diffusion API enterprise: num_inference_steps minimum 1, maximum 50
    # Stable Diffusion API enterprise: 1 to 20. ModelsLab v6 inpaint's table says 1 to 5, but its own
    # SDK (modelslab-py) sends 7.5 by default, so both routes take the enterprise range.
    guidance_scale=(1, 20),
    strength=(0, 1),  # both: "1.0 corresponds to full destruction of information in the init image"
    max_side=1024,  # both: "Max Height: Width: 1024x1024"
)
API_ONLY: tuple[str, ...] = ("upscale", "panorama", "self_attention", "full_url")
"""Fields those APIs document for their other image endpoints (the Stable Diffusion API enterprise's
result `meta`, ModelsLab's community inpaint): accepted and dropped, and listed in `meta.not_applied`."""
KNOWN_FIELDS = (
    {name for cls in REQUEST_CLASSES.values() for name in cls.model_fields}
    | {"img_width", "img_height"}
    | set(RENAMED)
    | ROUTE_FIELDS
    | set(API_ONLY)
)
WIRE_NAMES = {"image": "init_image", "mask": "mask_image", "img_width": "width", "img_height": "height"}
"""Our field -> the name a client of these APIs uses, for error messages."""


@dataclass(frozen=True)
class Translated:
    """A ModelsLab / Stable Diffusion API body as a Segmind-style body for `model`."""

    model: str
    fields: dict[str, Any]
    not_applied: tuple[str, ...]
    names: dict[str, str] = field(default_factory=dict)
    """Our field -> the name the client sent it under (errors name the latter)."""

    def wire_name(self, ours: str) -> str:
        return self.names.get(ours, ours)


def is_yes(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in TRUTHY)


def to_multiple_of_8(value: Any) -> Any:
    """A side within 8..1024 that is no multiple of 8 is floored to one (the latent grid is 8 px);
    anything else is left for the request model to check and reject."""
    try:
        side = int(str(value).strip()) if not isinstance(value, bool) else value
    except ValueError:
        return value
    if isinstance(side, int) and 8 <= side <= RANGES.max_side and side % 8:
        return side - side % 8
    return value


def translate(body: dict[str, Any], *, unknown: str = "reject") -> Translated:
    """Nulls mean "not given"; `seed: null` means random. `unknown`: "reject" leaves a field no API
    documents in the body (the request model refuses it), "ignore" drops it and lists it as not applied."""
    fields = {k: v for k, v in body.items() if v is not None and k not in ROUTE_FIELDS}
    dropped = [k for k in fields if k in API_ONLY or (unknown == "ignore" and k not in KNOWN_FIELDS)]
    for name in dropped:
        del fields[name]
    names = {ours: theirs for ours, theirs in WIRE_NAMES.items() if ours not in body}
    for theirs, ours in RENAMED.items():
        if theirs in fields:
            value = fields.pop(theirs)
            fields.setdefault(ours, value)
            names[ours] = theirs
    if isinstance(fields.get("seed"), str) and fields["seed"].strip().lower() in ("", "null", "none"):
        del fields["seed"]
    if "base64" in fields:
        fields["base64"] = is_yes(fields["base64"])
    for side in ("width", "height"):
        if side in fields:
            fields[side] = to_multiple_of_8(fields[side])
    return Translated(str(body.get("model_id") or DEFAULT_MODEL), fields, tuple(dropped), names)


def meta_of(job: Job) -> dict[str, Any]:
    """The parameters actually used, in ModelsLab's names."""
    params = job.params
    return {
        "prompt": params.get("prompt"),  # as used: with the enhance_prompt suffix when asked for
        "negative_prompt": params.get("negative_prompt"),
        "model_id": job.model,
        "scheduler": params.get("scheduler"),
        "W": params.get("width"),
        "H": params.get("height"),
        "guidance_scale": params.get("guidance_scale"),
        "steps": params.get("num_inference_steps"),
        "n_samples": params.get("samples"),
        "seed": params.get("seed"),
        "strength": params.get("strength"),
        "file_prefix": job.id,
        **{theirs: url for ours, theirs in INPUT_NAMES.items() if (url := (job.input_urls or {}).get(ours))},
        "enhance_prompt": yes_no(params.get("enhance_prompt")),
        "safetychecker": yes_no(params.get("safety")),
        **options_meta(params),
    }


INPUT_NAMES = {"image": "init_image", "mask": "mask_image"}


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


def options_meta(params: dict[str, Any]) -> dict[str, Any]:
    """The family-specific options the job used (storage.contract.params.JobParams), only those it has."""
    adapters = params.get("adapters") or {}
    loras = adapters.get("loras") or []
    control = params.get("control") or {}
    found = {
        "safety_checker_type": params.get("safety"),
        "use_karras_sigmas": None if params.get("use_karras_sigmas") is None else yes_no(params["use_karras_sigmas"]),
        "algorithm_type": params.get("algorithm_type"),
        "base_model": params.get("base_model"),
        "cn_model": control.get("model"),
        "cn_processor": control.get("processor"),
        "lora_model": ",".join(lora["name"] for lora in loras) or None,
        "lora_strength": ",".join(f"{lora['weight']:g}" for lora in loras) or None,
        "vae": adapters.get("vae"),
        "embeddings_model": ",".join(adapters.get("embeddings") or []) or None,
        "clip_skip": adapters.get("clip_skip"),
        "not_applied": list(params.get("ignored") or []) or None,
    }
    return {name: value for name, value in found.items() if value is not None}


def final_body(job: Job, output: list[str]) -> dict[str, Any]:
    """success (with output) or error, for a COMPLETED or FAILED job."""
    if job.status == JobStatus.COMPLETED.value:
        return {
            "status": "success",
            "generationTime": job.inference_time,
            "id": job.number,
            "output": output,
            "meta": meta_of(job),
        }
    return {
        "status": "error",
        "id": job.number,
        "message": job.error_message,
        "error_code": job.error_code,
        "output": [],
        "meta": meta_of(job),
    }


def webhook_body(job: Job, output: list[str]) -> dict[str, Any]:
    return {**final_body(job, output), "track_id": job.track_id}
