"""Build the diffusers scheduler that a scheduler name maps to (table: storage.contract.schedulers)."""

from __future__ import annotations

from typing import Any

import diffusers

from storage.contract.params import JobParams
from storage.contract.schedulers import find_scheduler

# Options every Stable Diffusion pipeline sets: PNDM runs as PLMS, without the Runge-Kutta warm-up
# steps (SDXL checkpoints ship an Euler config, from which PNDM would otherwise inherit them).
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {"PNDMScheduler": {"skip_prk_steps": True}}


def build_scheduler(name: str, base_config: Any, **overrides: Any) -> Any:
    """A fresh scheduler of the named kind, from the pipeline's own scheduler config."""
    spec = find_scheduler(name)
    if spec is None or spec.unsupported_reason:
        raise ValueError(f"scheduler {name!r} cannot be built")
    cls = getattr(diffusers, spec.class_name)
    options = {**CLASS_DEFAULTS.get(spec.class_name, {}), **spec.options, **overrides}
    return cls.from_config(base_config, **options)


def scheduler_overrides(params: JobParams) -> dict[str, Any]:
    """The job's explicit scheduler options (use_karras_sigmas, algorithm_type), already validated."""
    overrides: dict[str, Any] = {}
    if params.use_karras_sigmas is not None:
        overrides["use_karras_sigmas"] = params.use_karras_sigmas
    if params.algorithm_type is not None:
        overrides["algorithm_type"] = params.algorithm_type
    return overrides
