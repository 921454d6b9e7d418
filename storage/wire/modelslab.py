"""The ModelsLab v6 inpaint / Stable Diffusion API enterprise wire format, as an adapter onto the one
job contract: its request bodies become Segmind-style bodies, and a job becomes its answers.

Shared by the API routes and the webhook worker, so an answer and a webhook say the same.
"""

from __future__ import annotations

from typing import Any

from storage.database.models import Job, JobStatus

FORMAT = "modelslab"
DEFAULT_MODEL = "sd1.5-inpainting"
RENAMED = {"init_image": "image", "mask_image": "mask", "steps": "num_inference_steps"}
ROUTE_FIELDS = {"key", "model_id", "instant_response", "request_id"}
# That API's defaults where ours differ (Stable Diffusion API enterprise, ModelsLab v6 inpaint).
DEFAULTS = {"enhance_prompt": True}
TRUTHY = {"yes", "true", "1", "on"}


def is_yes(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in TRUTHY)


def translate(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(model slug, Segmind-style body). Nulls mean "not given"; `seed: null` means random."""
    fields = {k: v for k, v in body.items() if v is not None and k not in ROUTE_FIELDS}
    for theirs, ours in RENAMED.items():
        if theirs in fields:
            value = fields.pop(theirs)
            fields.setdefault(ours, value)
    if isinstance(fields.get("seed"), str) and fields["seed"].strip().lower() in ("", "null", "none"):
        del fields["seed"]
    if "base64" in fields:
        fields["base64"] = is_yes(fields["base64"])
    return str(body.get("model_id") or DEFAULT_MODEL), fields


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
        "enhance_prompt": yes_no(params.get("enhance_prompt")),
        "safetychecker": yes_no(params.get("safety")),
        **options_meta(params),
    }


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
            "id": job.id,
            "output": output,
            "meta": meta_of(job),
        }
    return {
        "status": "error",
        "id": job.id,
        "message": job.error_message,
        "error_code": job.error_code,
        "output": [],
        "meta": meta_of(job),
    }


def webhook_body(job: Job, output: list[str]) -> dict[str, Any]:
    return {**final_body(job, output), "track_id": job.track_id}
