"""The family request classes and the resolution of every seed field: honoured, or a 400 that says why."""

from __future__ import annotations

import inspect
import random

import pytest
from pydantic import ValidationError

from storage.contract.assets import BUILTIN_ASSETS, AssetCatalog, AssetSpec
from storage.contract.params import JobParams, resolve_params
from storage.contract.processors import IMPLEMENTED, MAPPED, UNAVAILABLE, resolve_processor
from storage.contract.requests import REQUEST_CLASSES, ControlNetRequest, InpaintRequest
from storage.contract.resolve import PROMPT_SUFFIX
from storage.contract.schedulers import ALGORITHM_CLASSES, KARRAS_CLASSES, SCHEDULERS, SUPPORTED_NAMES
from storage.contract.specs import BUILTIN
from storage.errors import InvalidInput

SDXL = BUILTIN["sdxl-inpaint"]
AUTO = BUILTIN["inpaint-auto"]
SD15 = BUILTIN["sd1.5-inpainting"]
CATALOG = AssetCatalog(
    [
        *BUILTIN_ASSETS.values(),
        AssetSpec(kind="lora", name="style", source="/x", family="sd15"),
        AssetSpec(kind="lora", name="detail", source="/y"),
        AssetSpec(kind="vae", name="fixed-vae", source="/z", family="sdxl"),
        AssetSpec(kind="embeddings", name="easyneg", source="/e.safetensors"),
    ]
)


def resolve(spec, **fields: object) -> JobParams:
    cls = REQUEST_CLASSES[spec.family]
    request = cls.model_validate({"prompt": "p", "image": "i", "mask": "m", **fields})
    return resolve_params(request, spec, image_size=(64, 64), rng=random.Random(0), catalog=CATALOG)


def rejected(spec, **fields: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        resolve(spec, **fields)
    return info.value


def test_seed_defaults_of_sdxl_inpaint_and_inpaint_auto() -> None:
    sdxl = resolve(SDXL, img_width=1024, img_height=1024)
    assert (sdxl.num_inference_steps, sdxl.guidance_scale, sdxl.strength) == (25, 7.5, 0.9)
    assert sdxl.scheduler == "DPM2 Karras" and sdxl.base_model == "SDXL" and sdxl.control is None
    auto = resolve(AUTO)
    assert auto.scheduler == "DPM++ 2M SDE Karras" and auto.base_model == "Real Vision XL"
    assert auto.control is not None and (auto.control.model, auto.control.processor) == ("Canny", "canny")
    assert (auto.width, auto.height) == (64, 64), "an input of a multiple of 8 up to 1024 keeps its size"


def test_each_family_takes_its_own_class() -> None:
    assert REQUEST_CLASSES["erase"] is InpaintRequest
    assert issubclass(REQUEST_CLASSES["sdxl"], REQUEST_CLASSES["sd15"])
    assert ControlNetRequest.model_validate({"prompt": "p", "image": "i"}).mask is None
    with pytest.raises(ValidationError):
        REQUEST_CLASSES["sdxl"].model_validate({"prompt": "p", "image": "i"})  # mask is required there
    for field in ("lora_model", "vae", "clip_skip", "safety_checker", "base_model", "cn_model"):
        with pytest.raises(ValidationError):
            InpaintRequest.model_validate({"prompt": "p", "image": "i", "mask": "m", field: "x"})


def test_seed_002_values_parse() -> None:
    params = resolve(
        SD15,
        width="512",
        height="512",
        samples="2",
        num_inference_steps="30",
        safety_checker="yes",
        enhance_prompt="yes",
        use_karras_sigmas="yes",
        scheduler="EulerDiscreteScheduler",
        tomesd="yes",
        loadbalancer="no",
        lora_model=None,
        vae=None,
        lora_strength=None,
        embeddings_model=None,
    )
    assert (params.width, params.samples, params.num_inference_steps) == (512, 2, 30)
    assert params.safety == "sensitive_content_text" and params.use_karras_sigmas is True
    assert params.prompt == "p" + PROMPT_SUFFIX and params.enhance_prompt
    assert params.ignored == ("tomesd", "loadbalancer")


def test_adapters_resolve_with_weights() -> None:
    params = resolve(SD15, lora_model="style, detail", lora_strength="0.6,0.3", embeddings_model="easyneg", clip_skip=2)
    assert [(u.name, u.weight) for u in params.adapters.loras] == [("style", 0.6), ("detail", 0.3)]
    assert params.adapters.embeddings == ("easyneg",) and params.adapters.clip_skip == 2
    one_for_all = resolve(SD15, lora_model="style,detail", lora_strength=0.5)
    assert [u.weight for u in one_for_all.adapters.loras] == [0.5, 0.5]
    assert [u.weight for u in resolve(SD15, lora_model="style").adapters.loras] == [1.0]


@pytest.mark.parametrize(
    "spec,fields,field,words",
    [
        (SDXL, {"base_model": "Turbo XL"}, "base_model", ["Turbo XL", "SDXL", "Juggernaut XL"]),
        (AUTO, {"cn_model": "Scribble"}, "cn_model", ["Scribble", "Canny", "Openpose"]),
        (SD15, {"lora_model": "nope"}, "lora_model", ["nope", "detail", "style"]),
        (SDXL, {"lora_model": "style"}, "lora_model", ["sd15", "sdxl"]),
        (SD15, {"vae": "fixed-vae"}, "vae", ["sdxl", "sd15"]),
        (
            SD15,
            {"lora_model": "style,detail", "lora_strength": "1,2,3"},
            "lora_strength",
            ["3 values", "2 LoRAs"],
        ),
        (SD15, {"lora_model": "style", "lora_strength": "strong"}, "lora_strength", ["number"]),
        (SD15, {"lora_model": "style", "lora_strength": 3}, "lora_strength", ["-2.0", "2.0", "3"]),
        (SD15, {"lora_strength": 0.5}, "lora_strength", ["needs lora_model"]),
        (SD15, {"lora_model": "style,style"}, "lora_model", ["different"]),
        (SD15, {"embeddings_model": "nope"}, "embeddings_model", ["nope", "easyneg"]),
        (
            SD15,
            {"scheduler": "DPM++ 2M Karras", "use_karras_sigmas": False},
            "use_karras_sigmas",
            ["contradicts"],
        ),
        (
            SD15,
            {"scheduler": "DPM++ 2M SDE Exponential", "use_karras_sigmas": True},
            "use_karras_sigmas",
            ["exponential"],
        ),
        (
            SD15,
            {"scheduler": "Euler", "algorithm_type": "dpmsolver+++"},
            "algorithm_type",
            ["DPM-Solver", "DPM++ 2M"],
        ),
        (
            SD15,
            {"scheduler": "DPM++ 2M SDE", "algorithm_type": "dpmsolver++"},
            "algorithm_type",
            ["contradicts"],
        ),
        (SD15, {"safety_checker_type": "black"}, "safety_checker_type", ["safety_checker"]),
        (SD15, {"mask_padding": 8}, "mask_padding", ["inpaint_only_masked"]),
        (AUTO, {"mask": None, "invert_mask": True}, "invert_mask", ["needs a mask"]),
        (
            SDXL,
            {"strength": 0.0, "img_width": 64, "img_height": 64},
            "strength",
            ["no denoising step", "0.04"],
        ),
    ],
)
def test_field_that_cannot_be_honoured_is_rejected(spec, fields: dict, field: str, words: list[str]) -> None:
    if spec is SDXL and field != "strength":
        fields = {"img_width": 1024, "img_height": 1024, **fields}
    error = rejected(spec, **fields)
    assert error.field == field, error.message
    for word in words:
        assert word in error.message, f"{word!r} missing from {error.message!r}"


def test_processor_lists_are_disjoint_and_documented_defaults() -> None:
    assert not set(IMPLEMENTED) & set(MAPPED) and not (set(IMPLEMENTED) | set(MAPPED)) & set(UNAVAILABLE)
    assert set(MAPPED.values()) <= set(IMPLEMENTED)
    defaults = (("Canny", "canny"), ("Depth", "depth"), ("SoftEdge", "softedge_pidinet"), ("Openpose", "openpose"))
    for model, processor in defaults:
        assert resolve(AUTO, cn_model=model).control.processor == processor  # type: ignore[union-attr]
    assert resolve_processor("a ControlNet registered later", None) == "none"


@pytest.mark.parametrize(
    "cn_model,cn_processor,runs",
    [
        ("Depth", "DPM++ 2M SDE Karras", "depth"),  # Segmind inpaint-auto's own example body
        ("Canny", "mediapipe_face", "canny"),
        ("Canny", "sobel", "canny"),
        ("Openpose", "dwpose", "openpose"),
        ("SoftEdge", "softedge_teed", "softedge_pidinet"),
    ],
)
def test_a_processor_that_cannot_run_falls_back_to_the_default_and_is_said_not_applied(
    cn_model: str, cn_processor: str, runs: str
) -> None:
    params = resolve(AUTO, cn_model=cn_model, cn_processor=cn_processor)
    assert params.control is not None and params.control.processor == runs
    assert params.ignored == ("cn_processor",)


@pytest.mark.parametrize(
    "cn_processor,runs",
    [
        *((name, name) for name in IMPLEMENTED),
        ("depth_leres", "depth"),
        ("depth_leres++", "depth"),
        ("scribble", "scribble_xdog"),
    ],
)
def test_an_implemented_or_mapped_processor_runs_and_is_applied(cn_processor: str, runs: str) -> None:
    params = resolve(AUTO, cn_model="Canny", cn_processor=cn_processor)
    assert params.control is not None and params.control.processor == runs
    assert "cn_processor" not in params.ignored


def test_scheduler_options_reach_the_params() -> None:
    assert resolve(SD15, scheduler="Euler", use_karras_sigmas=True).use_karras_sigmas is True
    assert "use_karras_sigmas" not in resolve(SD15, scheduler="Euler", use_karras_sigmas=True).ignored


def test_karras_sigmas_on_a_scheduler_without_them_are_accepted_and_said_not_applied() -> None:
    """The Stable Diffusion API enterprise's own example: use_karras_sigmas "yes" (its default) with
    PNDMScheduler."""
    params = resolve(SD15, scheduler="PNDMScheduler", use_karras_sigmas=True, tomesd=True)
    assert params.use_karras_sigmas is None
    assert params.ignored == ("tomesd", "use_karras_sigmas")
    assert (
        resolve(SD15, scheduler="DPMSolverMultistepScheduler", algorithm_type="dpmsolver+++").algorithm_type
        == "dpmsolver++"
    )
    assert resolve(SD15, scheduler="DPM++ 2M", algorithm_type="sde-dpmsolver++").algorithm_type == "sde-dpmsolver++"


def test_scheduler_capability_tables_match_diffusers() -> None:
    import diffusers

    for name in SUPPORTED_NAMES:
        cls_name = SCHEDULERS[name].class_name
        params = inspect.signature(getattr(diffusers, cls_name).__init__).parameters
        assert ("use_karras_sigmas" in params) == (cls_name in KARRAS_CLASSES), cls_name
        if cls_name in ALGORITHM_CLASSES:
            assert "algorithm_type" in params


def test_old_job_params_still_read() -> None:
    stored = {
        "prompt": "p",
        "negative_prompt": None,
        "samples": 1,
        "scheduler": "DDIM",
        "num_inference_steps": 20,
        "guidance_scale": 7.5,
        "strength": 1.0,
        "seed": 3,
        "width": 512,
        "height": 512,
    }
    params = JobParams.model_validate(stored)
    assert params.adapters.loras == () and params.safety is None and params.control is None
