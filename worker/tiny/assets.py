"""`inpaint-worker tiny-model DIR --kind KIND`: write a tiny random-weight model or asset, and register it.

Kinds: sd15 (the default, worker.tiny.sd15), sdxl (9-channel inpainting UNet), sdxl-plain
(4-channel UNet), controlnet (SDXL), vae, lora-sd15, lora-sdxl, embeddings-sd15,
embeddings-sdxl, safety-checker, depth, depth-anything, depth-zoe, annotators (the ControlNet
1.1 annotator files under their published names, tiny widths). `--register SLUG` registers a pipeline kind
as a model slug; `--asset NAME` registers any kind under the asset kind it is
(sdxl kinds as a base_model, controlnet as a cn_model, ...), so that e.g.
`--kind sdxl --asset SDXL` points the built-in base model "SDXL" at it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from storage.contract.assets import ANNOTATORS, DEFAULT_SAFETY_CHECKER, DEPTH_ESTIMATOR, AssetSpec
from storage.contract.specs import Family
from storage.database.assets import register_asset
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.jobs import utcnow
from storage.database.registry import register_model
from storage.settings import Settings
from worker.tiny.sd15 import build_tiny_pipeline, build_tiny_vae, tiny_spec
from worker.tiny.sdxl import (
    build_tiny_controlnet,
    build_tiny_depth,
    build_tiny_depth_anything,
    build_tiny_safety_checker,
    build_tiny_sdxl,
    build_tiny_zoedepth,
    save_pair,
)

EMBEDDING_FILE = "embedding.safetensors"


def save_tiny_lora(pipe: Any, path: Path, *, seed: int = 0) -> Path:
    """A rank-4 LoRA with random (non-zero) weights on the UNet's attention projections."""
    # peft takes a second or more to import: only the LoRA kinds load it.
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    pipe.unet.add_adapter(config)
    type(pipe).save_lora_weights(path, unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    return path


def save_tiny_embedding(path: Path, *, sdxl: bool, seed: int = 0) -> Path:
    """A one-vector textual inversion: {"<tiny>": (1, 32)}, or SDXL's {"clip_l", "clip_g"}."""
    generator = torch.Generator().manual_seed(seed)
    vectors = {k: torch.randn(1, 32, generator=generator) for k in (("clip_l", "clip_g") if sdxl else ("<tiny>",))}
    path.mkdir(parents=True, exist_ok=True)
    save_file(vectors, str(path / EMBEDDING_FILE))
    return path / EMBEDDING_FILE


def save_tiny_annotators(path: Path, *, seed: int = 0) -> Path:
    """Every annotator network's files, with tiny random weights, under their published names."""
    from worker.engine.control.annotators import MODULES  # the networks: torch modules, loaded here only

    for module in MODULES.values():
        for name, state in module.tiny_states(seed).items():
            torch.save(state, path / name)
    return path


def _pipeline(build: Callable[[Path], Any]) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        build(path).save_pretrained(path)
        return path

    return write


# kind -> (writer, asset kind (None: a model slug only), family of the asset)
WRITERS: dict[str, tuple[Callable[[Path], Path], str | None, str | None]] = {
    "sd15": (_pipeline(lambda p: build_tiny_pipeline()), None, "sd15"),
    "sdxl": (_pipeline(lambda p: build_tiny_sdxl(in_channels=9)), "base_model", "sdxl"),
    "sdxl-plain": (_pipeline(lambda p: build_tiny_sdxl(in_channels=4, seed=1)), "base_model", "sdxl"),
    "controlnet": (_pipeline(lambda p: build_tiny_controlnet()), "controlnet", "sdxl"),
    "vae": (_pipeline(lambda p: build_tiny_vae(seed=5)), "vae", None),
    "lora-sd15": (lambda p: save_tiny_lora(build_tiny_pipeline(), p), "lora", "sd15"),
    "lora-sdxl": (lambda p: save_tiny_lora(build_tiny_sdxl(), p), "lora", "sdxl"),
    "embeddings-sd15": (lambda p: save_tiny_embedding(p, sdxl=False), "embeddings", "sd15"),
    "embeddings-sdxl": (lambda p: save_tiny_embedding(p, sdxl=True), "embeddings", "sdxl"),
    "safety-checker": (lambda p: save_pair(*build_tiny_safety_checker(), p), "safety_checker", None),
    "depth": (lambda p: save_pair(*build_tiny_depth(), p), "depth_estimator", None),
    "depth-anything": (lambda p: save_pair(*build_tiny_depth_anything(), p), "depth_estimator", None),
    "depth-zoe": (lambda p: save_pair(*build_tiny_zoedepth(), p), "depth_estimator", None),
    "annotators": (save_tiny_annotators, "annotators", None),
}
DEFAULT_ASSET_NAMES = {
    "safety_checker": DEFAULT_SAFETY_CHECKER,
    "depth_estimator": DEPTH_ESTIMATOR,
    "annotators": ANNOTATORS,
}


def write_tiny(path: Path, kind: str) -> Path:
    """Write a tiny `kind` under `path`; returns what to register as its source (a directory or a file)."""
    path.mkdir(parents=True, exist_ok=True)
    return WRITERS[kind][0](path)


def register_tiny(settings: Settings, kind: str, source: Path, *, slug: str | None, asset: str | None) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            if slug:
                if kind not in ("sd15", "sdxl", "sdxl-plain"):
                    raise ValueError(f"a tiny {kind} is not a pipeline; register it with --asset")
                family: Family = "sd15" if kind == "sd15" else "sdxl"
                register_model(session, tiny_spec(slug, str(source), family), now=utcnow())
            if asset:
                _, asset_kind, asset_family = WRITERS[kind]
                if asset_kind is None:
                    raise ValueError(f"a tiny {kind} model is registered with --register, not --asset")
                spec = AssetSpec(kind=asset_kind, name=asset, source=str(source), family=asset_family)
                register_asset(session, spec, now=utcnow())
    finally:
        engine.dispose()
