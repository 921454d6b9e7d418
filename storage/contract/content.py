"""Content blocks: whether a job runs the NSFW safety checker, and what an image it flags does.

Segmind v2 ends a blocked request FAILED ("content / RAI blocks surface as FAILED");
the Stable Diffusion API enterprise and ModelsLab replace the image and report it in
`nsfw`. A job takes, in order, the request's `nsfw_action`, its key's, or its route's
API's: Segmind routes (`/v1`, `/v2`, batches) block, the ModelsLab and Stable
Diffusion API routes replace. The operator's `INPAINT_SAFETY_CHECKER=always` runs
the checker on every job of a diffusion model, asked for or not.
"""

from __future__ import annotations

from typing import Literal

from storage.contract.params import JobParams
from storage.contract.requests import DiffusionRequest, InpaintRequest, NsfwAction
from storage.errors import InvalidInput

CONTENT_BLOCKED = "content_blocked"
"""The error code of a job whose image the safety checker flagged, under `nsfw_action: block`."""
DEFAULT_REPLACEMENT = "sensitive_content_text"
NSFW_ACTIONS: tuple[NsfwAction, ...] = ("block", "replace")
CheckerMode = Literal["request", "always"]


def route_action(api_format: str | None) -> NsfwAction:
    """The route's own API's semantics: None (Segmind) blocks; ModelsLab and Stable Diffusion API formats replace."""
    return "replace" if api_format else "block"


def apply_content_policy(
    params: JobParams,
    request: InpaintRequest,
    *,
    key_action: str | None,
    api_format: str | None,
    checker: CheckerMode,
) -> JobParams:
    """`params` with the safety check on when asked for (or always) and the flagged-image action resolved.

    `erase` paints nothing new and is never checked. `nsfw_action` on a request whose check is
    off, or `block` with a `safety_checker_type` (nothing is shown to replace), is a 400.
    """
    if not isinstance(request, DiffusionRequest):
        return params
    checked = request.safety_checker or checker == "always"
    if request.nsfw_action is not None and not checked:
        raise InvalidInput(
            "nsfw_action",
            "only applies with safety_checker: yes (or with the checker always on)",
            value=request.nsfw_action,
        )
    if request.nsfw_action == "block" and request.safety_checker_type is not None:
        raise InvalidInput(
            "safety_checker_type",
            "does not apply with nsfw_action: block (a flagged image fails the job; nothing replaces it)",
            value=request.safety_checker_type,
        )
    if not checked:
        return params
    action = request.nsfw_action or key_action or route_action(api_format)
    if action not in NSFW_ACTIONS:
        raise ValueError(f"unknown nsfw_action {action!r}")
    return params.model_copy(update={"safety": params.safety or DEFAULT_REPLACEMENT, "nsfw_action": action})
