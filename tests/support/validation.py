"""The per-field table of bad request bodies: each is a 400 naming the field, the limit and the value,
and nothing is queued for it.

One table, run at each layer that refuses a body:

- tests/storage/contract/test_request_validation.py: the contract alone, `REQUEST_CLASSES[family]`
  (stage "body") and `resolve_params` against the model's spec (stage "resolve");
- tests/storage/blobs/test_images.py: checking the image or the mask from its header (stage "image");
- tests/api/test_submit_validation.py: every case through the app (TestClient, a real database);
- tests/e2e/api/test_validation.py: one case of each stage over HTTP against the live stack.

`stage` is where the body is first refused: the app validates the body with the family's request
class, then checks the images from their headers, then resolves the request against the model's spec
(api.submit.accept_job). `limit` and `value` are what that stage reports: the constraint of the
pydantic error (`ctx`) and its input for "body", `InvalidInput.limit` and `.value` otherwise.
`words` are what the message the client reads must contain (api.errors renders it).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from storage.blobs.images import ALLOWED_FORMATS
from storage.contract.schedulers import SUPPORTED_NAMES
from storage.contract.specs import ModelSpec, Range
from tests.conftest import TINY_SLUG
from tests.support.images import b64, box_mask, job_body, png_bytes, scene

SD15 = "sd1.5-inpainting"


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""The value of a field the body leaves out (a "missing" error's input is the whole body)."""


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    overrides: dict[str, Any]
    """Fields to set on job_body(); None leaves the field out."""
    field: str
    words: list[str]
    stage: str
    """"body", "resolve" or "image": see the module's docstring."""
    limit: Any = None
    value: Any = None


FORMATS = list(ALLOWED_FORMATS)

CASES = [
    Case("prompt missing", SD15, {"prompt": None}, "prompt", ["required"], "body", value=ABSENT),
    Case("prompt empty", SD15, {"prompt": ""}, "prompt", ["empty"], "body", limit=1, value=""),
    Case("prompt too long", SD15, {"prompt": "x" * 4001}, "prompt", ["4000", "4001"], "body", 4000, "x" * 4001),
    Case("mask missing", SD15, {"mask": None}, "mask", ["required"], "body", value=ABSENT),
    Case("samples too many", SD15, {"samples": 5}, "samples", ["at most 4", "5"], "body", 4, 5),
    Case("samples zero", SD15, {"samples": 0}, "samples", ["at least 1", "0"], "body", 1, 0),
    Case("samples not a number", SD15, {"samples": "many"}, "samples", ["integer", "many"], "body", value="many"),
    Case("seed below -1", SD15, {"seed": -2}, "seed", ["at least -1", "-2"], "body", -1, -2),
    Case(
        "seed too large", SD15, {"seed": 10**15}, "seed", ["999999999999999", str(10**15)], "body", 10**15 - 1, 10**15
    ),
    Case("strength above 1", SD15, {"strength": 1.5}, "strength", ["at most 1", "1.5"], "body", 1, 1.5),
    Case(
        "strength below the model's minimum",
        SD15,
        {"strength": 0.05},
        "strength",
        ["0.1", "0.05"],
        "resolve",
        [0.1, 1],
        0.05,
    ),
    Case(
        "guidance above the model's range",
        SD15,
        {"guidance_scale": 30},
        "guidance_scale",
        ["25", "30"],
        "resolve",
        [0.1, 25],
        30,
    ),
    Case(
        "steps below the model's range",
        SD15,
        {"num_inference_steps": 10},
        "num_inference_steps",
        ["20", "100", "10"],
        "resolve",
        [20, 100],
        10,
    ),
    Case(
        "steps above the model's range",
        SD15,
        {"num_inference_steps": 101},
        "num_inference_steps",
        ["100", "101"],
        "resolve",
        [20, 100],
        101,
    ),
    Case(
        "steps above any schedule",
        SD15,
        {"num_inference_steps": 1000},
        "num_inference_steps",
        ["500", "1000"],
        "body",
        500,
        1000,
    ),
    Case(
        "steps beyond LCM's schedule",
        SD15,
        {"scheduler": "LCM", "num_inference_steps": 40, "strength": 0.5},
        "num_inference_steps",
        ["LCM", "at most 25", "strength 0.5", "40"],
        "resolve",
        25,
        40,
    ),
    Case(
        "width not an allowed size",
        SD15,
        {"img_width": 600},
        "img_width",
        ["512", "768", "600"],
        "resolve",
        "one of 512, 768",
        600,
    ),
    Case(
        "height not a multiple of 8",
        TINY_SLUG,
        {"img_height": 60},
        "img_height",
        ["multiple of 8", "60"],
        "resolve",
        "a multiple of 8 from 8 to 128",
        60,
    ),
    Case(
        "width above the model's maximum",
        TINY_SLUG,
        {"img_width": 256},
        "img_width",
        ["128", "256"],
        "resolve",
        "a multiple of 8 from 8 to 128",
        256,
    ),
    Case(
        "unknown scheduler",
        SD15,
        {"scheduler": "Turbo"},
        "scheduler",
        ["Turbo", "DDIM", "Euler a"],
        "resolve",
        SUPPORTED_NAMES,
        "Turbo",
    ),
    Case(
        "scheduler that cannot inpaint",
        SD15,
        {"scheduler": "KarrasVeScheduler"},
        "scheduler",
        ["not supported", "valid names", "DDIM"],
        "resolve",
        SUPPORTED_NAMES,
        "KarrasVeScheduler",
    ),
    Case("unknown field", SD15, {"cfg": 7}, "cfg", ["not a field"], "body", None, 7),
    Case(
        "image not base64", SD15, {"image": "not an image!"}, "image", ["URL", "base64"], "image", None, "not an image!"
    ),
    Case(
        "image not a picture",
        SD15,
        {"image": base64.b64encode(b"hello, world").decode()},
        "image",
        ["could not be decoded", "PNG"],
        "image",
        FORMATS,
    ),
    Case(  # cut inside its header; one cut in its pixel data passes here and fails the job (invalid_input)
        "mask header truncated",
        SD15,
        {"mask": base64.b64encode(png_bytes(box_mask())[:20]).decode()},
        "mask",
        ["could not be decoded"],
        "image",
        FORMATS,
    ),
    Case(
        "image in a format not allowed",
        SD15,
        {"image": b64(scene(), "BMP")},
        "image",
        ["could not be decoded"],
        "image",
        FORMATS,
    ),
]

IMAGE_SIZE = (64, 64)
"""The size of job_body()'s image, which every case that decodes its images keeps."""


def ids(cases: list[Case]) -> list[str]:
    return [case.id for case in cases]


def of_stage(*stages: str) -> list[Case]:
    return [case for case in CASES if case.stage in stages]


def bad_body(case: Case) -> dict[str, Any]:
    """job_body() with the case's overrides: a value of None leaves the field out."""
    body = job_body()
    for name, value in case.overrides.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def registered_tiny_spec(source: str) -> ModelSpec:
    """The spec `inpaint-admin models register TINY_SLUG SOURCE *TINY_REGISTRATION` stores (the app's
    test registers it that way, in process, and checks it reads back equal to this)."""
    return ModelSpec(
        slug=TINY_SLUG,
        family="sd15",
        source=source,
        max_side=128,
        default_size=64,
        default_scheduler="DDIM",
        steps=Range(min=1, max=50, default=2),
    )
