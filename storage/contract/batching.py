"""Dynamic batching: which queued jobs can share one pipeline call (storage.database.companions
claims them).

Two jobs can run as one diffusers call when everything but their prompts, seeds and
inputs is the same: model and base weights, size, steps, scheduler and its options,
guidance, strength, adapters (VAE, LoRAs, embeddings, clip_skip). Each must ask for
one image: a job with `samples` n shares one VAE encoding of its input among its n
images, which a batch of separate inputs cannot reproduce, so such a job runs alone
and keeps exactly the images it would have had. So does a ControlNet job (its
control image is per job) and `erase` (no pipeline). Mask handling, the safety
check and storage stay per job, so they may differ.
"""

from __future__ import annotations

import json

from storage.contract.params import JobParams

BATCHED_FAMILIES = ("sd15", "sdxl")
PER_JOB_FIELDS = {"prompt", "negative_prompt", "seed", "mask", "safety", "nsfw_action", "enhance_prompt", "ignored"}


def batch_signature(family: str, params: JobParams) -> str | None:
    """Jobs with equal signatures can share a pipeline call; None: this job always runs alone."""
    if family not in BATCHED_FAMILIES or params.samples != 1 or params.control is not None:
        return None
    shared = params.model_dump(mode="json", exclude=PER_JOB_FIELDS)
    # SDXL encodes a missing negative prompt as zeros and an empty one as "": not interchangeable.
    shared["negative_prompt_given"] = params.negative_prompt is not None
    return json.dumps(shared, sort_keys=True)
