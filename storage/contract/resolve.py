"""Resolving the family-specific fields of a request, one helper per concern.

storage.contract.params.resolve_params calls these. Each returns the concrete value the
worker will use, or raises InvalidInput naming the field, the limit and the value.
Names (base_model, cn_model, LoRAs, VAE, embeddings) are checked against an
AssetCatalog read once per request, so this module stays free of the database.
"""

from __future__ import annotations

from storage.contract.assets import ASSET_LABELS, AssetCatalog
from storage.contract.schedulers import (
    ALGORITHM_CLASSES,
    ALGORITHM_TYPES,
    KARRAS_CLASSES,
    NO_ADD_NOISE_CLASSES,
    SCHEDULERS,
    names_of_classes,
)
from storage.errors import InvalidInput

PROMPT_SUFFIX = ", highly detailed, sharp focus, professional photography, natural lighting, 8k"
"""What enhance_prompt appends to the prompt (the result's meta shows the prompt used)."""

NOT_APPLIED: tuple[str, ...] = ("tomesd", "loadbalancer", "temp", "multi_lingual")
"""Accepted for compatibility with the Stable Diffusion API enterprise and ModelsLab v6 inpaint, not applied;
the job's params list the ones given."""

MAX_LORAS = 5
LORA_WEIGHT_LIMIT = (-2.0, 2.0)


def karras_applies(scheduler: str, use_karras_sigmas: bool | None) -> bool:
    """False when Karras sigmas are asked for on a scheduler that has none: the Stable Diffusion API
    defaults `use_karras_sigmas` to yes and its own example pairs it with PNDMScheduler, so such a
    request is accepted and the result's `meta.not_applied` names the field."""
    return not (use_karras_sigmas and SCHEDULERS[scheduler].class_name not in KARRAS_CLASSES)


def resolve_karras(scheduler: str, use_karras_sigmas: bool | None) -> bool | None:
    """None keeps the scheduler name's own choice; True/False must be possible and not contradict it."""
    if use_karras_sigmas is None or not karras_applies(scheduler, use_karras_sigmas):
        return None
    spec = SCHEDULERS[scheduler]
    named = spec.options.get("use_karras_sigmas", False)
    if use_karras_sigmas and spec.options.get("use_exponential_sigmas"):
        raise InvalidInput(
            "use_karras_sigmas",
            f"scheduler {scheduler!r} uses exponential sigmas; a scheduler uses one kind of sigmas",
            value=use_karras_sigmas,
        )
    if named and not use_karras_sigmas:
        raise InvalidInput(
            "use_karras_sigmas",
            f"contradicts scheduler {scheduler!r}, which uses Karras "
            "sigmas; name the scheduler without 'Karras' instead",
            value=use_karras_sigmas,
        )
    return use_karras_sigmas


def check_scheduler_fits(scheduler: str, strength: float, family: str) -> None:
    """A scheduler that cannot add noise works only at strength 1 on SD 1.5 models."""
    spec = SCHEDULERS[scheduler]
    if spec.class_name in NO_ADD_NOISE_CLASSES and (strength < 1 or family != "sd15"):
        raise InvalidInput(
            "scheduler",
            f"{scheduler!r} cannot add noise to an image, so it runs only with "
            f"strength 1 on SD 1.5 models (this is a {family} model, strength {strength})",
            value=scheduler,
        )


def resolve_algorithm(scheduler: str, algorithm_type: str | None) -> str | None:
    """The DPM-Solver algorithm; only DPM-Solver schedulers take one."""
    if algorithm_type is None:
        return None
    spec = SCHEDULERS[scheduler]
    if spec.class_name not in ALGORITHM_CLASSES:
        raise InvalidInput(
            "algorithm_type",
            f"applies to DPM-Solver schedulers only, not {scheduler!r} ({spec.class_name}); those are: "
            + ", ".join(names_of_classes(ALGORITHM_CLASSES)),
            limit=names_of_classes(ALGORITHM_CLASSES),
            value=algorithm_type,
        )
    algorithm = ALGORITHM_TYPES[algorithm_type]
    named = spec.options.get("algorithm_type")
    if named is not None and named != algorithm:
        raise InvalidInput(
            "algorithm_type",
            f"contradicts scheduler {scheduler!r}, which uses {named!r}",
            value=algorithm_type,
        )
    return algorithm


def check_name(field: str, kind: str, name: str, catalog: AssetCatalog, family: str) -> str:
    """`name` must be a registered asset of `kind` usable by a model of `family` (sd15 or sdxl)."""
    asset = catalog.get(kind, name)
    if asset is None:
        known = catalog.names(kind)
        raise InvalidInput(
            field,
            f"unknown {ASSET_LABELS[kind]} {name!r}; registered: " + (", ".join(known) or "none"),
            limit=known,
            value=name,
        )
    if asset.family is not None and asset.family != family:
        raise InvalidInput(field, f"{name!r} is for {asset.family} models; this model is {family}", value=name)
    return name


def split_names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def resolve_loras(
    lora_model: str | None, lora_strength: str | float | None, catalog: AssetCatalog, family: str
) -> list[tuple[str, float]]:
    """`lora_model` "a,b" with `lora_strength` "0.7,0.4" (one value applies to all; none means 1.0)."""
    names = split_names(lora_model or "")
    if not names:
        if lora_strength is not None:
            raise InvalidInput("lora_strength", "needs lora_model: there is no LoRA to weigh", value=lora_strength)
        return []
    if len(names) > MAX_LORAS or len(set(names)) != len(names):
        raise InvalidInput(
            "lora_model",
            f"must name 1 to {MAX_LORAS} different LoRAs, got {len(names)}",
            limit=MAX_LORAS,
            value=lora_model,
        )
    for name in names:
        check_name("lora_model", "lora", name, catalog, family)
    weights = parse_weights(lora_strength, len(names))
    return list(zip(names, weights, strict=True))


def parse_weights(value: str | float | None, count: int) -> list[float]:
    if value is None:
        return [1.0] * count
    try:
        weights = [float(value)] if not isinstance(value, str) else [float(w) for w in split_names(value)]
    except ValueError:
        raise InvalidInput("lora_strength", "must be a number or comma-separated numbers", value=value) from None
    if len(weights) == 1:
        weights = weights * count
    if len(weights) != count:
        raise InvalidInput(
            "lora_strength",
            f"has {len(weights)} values for {count} LoRAs; give one value per LoRA, or one for all",
            limit=count,
            value=value,
        )
    low, high = LORA_WEIGHT_LIMIT
    for weight in weights:
        if not low <= weight <= high:
            raise InvalidInput(
                "lora_strength",
                f"each weight must be between {low} and {high}, got {weight}",
                limit=[low, high],
                value=value,
            )
    return weights


def enhance(prompt: str) -> str:
    return prompt + PROMPT_SUFFIX
