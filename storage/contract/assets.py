"""Named model components: base models, ControlNets, LoRAs, VAEs, embeddings, depth estimators
and safety checkers.

A request names them (`base_model: "Juggernaut XL"`, `cn_model: "Depth"`,
`lora_model: "a,b"`, `vae`, `embeddings_model`); the registry maps each name to
a hub id or a local path. Built-in names are defined here; names registered at
run time live in the `model_assets` table, which every process reads, and may
override a built-in (that is how an offline machine, or a test, points "SDXL"
at a local directory).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage.contract.sources import SHA256_PATTERN, is_single_file

AssetKind = Literal[
    "base_model", "controlnet", "lora", "vae", "embeddings", "depth_estimator", "safety_checker", "annotators"
]
ASSET_KINDS: tuple[str, ...] = (
    "base_model",
    "controlnet",
    "lora",
    "vae",
    "embeddings",
    "depth_estimator",
    "safety_checker",
    "annotators",
)
ASSET_LABELS: dict[str, str] = {
    "base_model": "base_model",
    "controlnet": "cn_model",
    "lora": "lora_model",
    "vae": "vae",
    "embeddings": "embeddings_model",
    "depth_estimator": "depth estimator",
    "safety_checker": "safety checker",
    "annotators": "annotators",
}
DEFAULT_SAFETY_CHECKER = "default"
DEPTH_ESTIMATOR = "depth"
ANNOTATORS = "annotators"
"""The one `annotators` asset: a directory (or hub repository) holding the ControlNet 1.1 annotator files
under their published names (storage.contract.processors.ANNOTATOR_FILES)."""


class AssetSpec(BaseModel):
    """One named component. `family` (sd15 or sdxl), when set, limits which models may use it.

    Options by kind: safety_checker `score_offset` (float, default 0): added to every concept
    score before the `> 0` test, like diffusers' own `adjustment`; positive flags more images,
    negative fewer. embeddings `token` (default: the name): the word that triggers it in a prompt.
    A base_model may be a single-file checkpoint (storage.contract.sources), with `sha256` and
    `config` as in ModelSpec.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AssetKind
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^,]+$")
    source: str = Field(
        min_length=1, description="Hub id, local directory or local file; a base_model may also be an http(s) URL."
    )
    family: Literal["sd15", "sdxl"] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = Field(None, pattern=SHA256_PATTERN, description="base_model checkpoints: their SHA-256.")
    config: str | None = Field(
        None, min_length=1, description="base_model checkpoints: the diffusers config that describes them."
    )

    @model_validator(mode="after")
    def _checkpoint_fields(self) -> AssetSpec:
        if (self.sha256 or self.config) and not (self.kind == "base_model" and is_single_file(self.source)):
            raise ValueError("sha256 and config apply to a base_model whose source is a .safetensors path or a URL")
        return self

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)


def _builtin(kind: AssetKind, name: str, source: str, family: Literal["sd15", "sdxl"] | None = None) -> AssetSpec:
    return AssetSpec(kind=kind, name=name, source=source, family=family)


BUILTIN_ASSETS: dict[tuple[str, str], AssetSpec] = {
    (a.kind, a.name): a
    for a in [
        # The base_model names of Segmind inpaint-auto (SDXL ControlNet inpaint).
        _builtin("base_model", "SDXL", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "sdxl"),
        _builtin("base_model", "Real Vision XL", "SG161222/RealVisXL_V4.0", "sdxl"),
        _builtin("base_model", "Juggernaut XL", "RunDiffusion/Juggernaut-XL-v9", "sdxl"),
        _builtin("base_model", "DreamShaper XL", "Lykon/dreamshaper-xl-1-0", "sdxl"),
        # Its cn_model names.
        _builtin("controlnet", "Canny", "diffusers/controlnet-canny-sdxl-1.0", "sdxl"),
        _builtin("controlnet", "Depth", "diffusers/controlnet-depth-sdxl-1.0", "sdxl"),
        _builtin("controlnet", "SoftEdge", "SargeZT/controlnet-sd-xl-1.0-softedge-dexined", "sdxl"),
        _builtin("controlnet", "Openpose", "thibaud/controlnet-openpose-sdxl-1.0", "sdxl"),
        # The models behind the depth and annotator cn_processors, and safety_checker "yes".
        _builtin("depth_estimator", DEPTH_ESTIMATOR, "Intel/dpt-hybrid-midas"),
        _builtin("depth_estimator", "depth_anything", "LiheYoung/depth-anything-small-hf"),
        _builtin("depth_estimator", "depth_zoe", "Intel/zoedepth-nyu-kitti"),
        _builtin("annotators", ANNOTATORS, "lllyasviel/Annotators"),
        _builtin("safety_checker", DEFAULT_SAFETY_CHECKER, "CompVis/stable-diffusion-safety-checker"),
    ]
}


class AssetCatalog:
    """The asset names a request may use, by kind, read once per request (resolution stays pure)."""

    def __init__(self, assets: list[AssetSpec]) -> None:
        self._by_key: dict[tuple[str, str], AssetSpec] = {(a.kind, a.name): a for a in assets}

    def get(self, kind: str, name: str) -> AssetSpec | None:
        return self._by_key.get((kind, name))

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self._by_key if k == kind)
