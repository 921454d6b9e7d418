"""Tiny random models for every family and asset, and a bench that runs jobs through the real path.

`build_tiny_assets` writes each kind with worker.tiny.assets (what `inpaint-worker
tiny-model --kind ...` runs). `register_tiny_assets` points the built-in names at
them (base_model "SDXL" and the other names of Segmind inpaint-auto, the four cn_model names,
the default safety checker, the depth estimators and the annotator networks) and adds a VAE, LoRAs and
embeddings. `Bench` then runs a request body the way the API and a worker do:
validate with the family's request class, resolve against the registry, resolve
the sources, load through the resident cache, `inpaint`, screen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from storage.contract.assets import AssetSpec
from storage.contract.params import JobParams, resolve_params
from storage.contract.requests import REQUEST_CLASSES
from storage.contract.specs import ModelSpec, Range
from storage.database.assets import load_catalog, register_asset
from storage.database.engine import make_engine, make_session_factory, session_scope
from storage.database.migrate import upgrade
from storage.database.registry import find_model, register_model

TINY_KINDS = {
    "sdxl": "sdxl",
    "sdxl_plain": "sdxl-plain",
    "controlnet": "controlnet",
    "vae": "vae",
    "lora_sd15": "lora-sd15",
    "lora_sdxl": "lora-sdxl",
    "embeddings_sd15": "embeddings-sd15",
    "embeddings_sdxl": "embeddings-sdxl",
    "safety": "safety-checker",
    "depth": "depth",
    "depth_anything": "depth-anything",
    "depth_zoe": "depth-zoe",
    "annotators": "annotators",
}
CONTROLNETS = ("Canny", "Depth", "SoftEdge", "Openpose")
OTHER_BASES = ("Real Vision XL", "Juggernaut XL", "DreamShaper XL")


@dataclass(frozen=True)
class TinyAssets:
    root: Path
    sources: dict[str, Path]
    controlnet_b: Path
    lora_sd15_b: Path

    def __getitem__(self, name: str) -> Path:
        return self.sources[name]


def build_tiny_assets(root: Path) -> TinyAssets:
    import torch

    from worker.tiny.assets import save_tiny_lora, write_tiny
    from worker.tiny.sd15 import build_tiny_pipeline
    from worker.tiny.sdxl import build_tiny_controlnet

    torch.set_num_threads(1)
    sources = {name: write_tiny(root / name, kind) for name, kind in TINY_KINDS.items()}
    build_tiny_controlnet(seed=7).save_pretrained(root / "controlnet_b")
    save_tiny_lora(build_tiny_pipeline(), root / "lora_sd15_b", seed=9)
    return TinyAssets(root=root, sources=sources, controlnet_b=root / "controlnet_b", lora_sd15_b=root / "lora_sd15_b")


def tiny_spec(slug: str, family: str, *, base_model: str | None = None, source: str = "") -> ModelSpec:
    """A tiny-sized route: 64 px by default, up to 128, few steps allowed."""
    return ModelSpec(
        slug=slug,
        family=family,
        source=source,
        base_model=base_model,
        sizes=None,  # type: ignore[arg-type]
        max_side=128,
        default_size=64,
        steps=Range(min=1, max=50, default=2),
        guidance_scale=Range(min=0, max=25, default=5),
        strength=Range(min=0.1, max=1, default=1),
    )


def register_tiny_assets(session: Session, assets: TinyAssets, *, sd15_dir: Path, score_offset: float = 0.0) -> None:
    """Point the built-in names at the tiny models, and re-register the SDXL slugs with tiny ranges."""
    now = datetime.now(UTC)

    def asset(kind: str, name: str, source: Path, family: str | None = None, **options: Any) -> None:
        register_asset(
            session,
            AssetSpec(
                kind=kind,
                name=name,
                source=str(source),
                family=family,  # type: ignore[arg-type]
                options=options,
            ),
            now=now,
        )

    asset("base_model", "SDXL", assets["sdxl"], "sdxl")
    for name in OTHER_BASES:
        asset("base_model", name, assets["sdxl_plain"], "sdxl")
    for index, name in enumerate(CONTROLNETS):
        asset("controlnet", name, assets["controlnet"] if index % 2 == 0 else assets.controlnet_b, "sdxl")
    asset("vae", "tiny-vae", assets["vae"])
    asset("lora", "tiny-lora", assets["lora_sd15"], "sd15")
    asset("lora", "tiny-lora-b", assets.lora_sd15_b, "sd15")
    asset("lora", "tiny-lora-xl", assets["lora_sdxl"], "sdxl")
    asset("embeddings", "tinytoken", assets["embeddings_sd15"], "sd15")
    asset("embeddings", "tinytoken-xl", assets["embeddings_sdxl"], "sdxl")
    asset("safety_checker", "default", assets["safety"], score_offset=score_offset)
    asset("depth_estimator", "depth", assets["depth"])
    asset("depth_estimator", "depth_anything", assets["depth_anything"])
    asset("depth_estimator", "depth_zoe", assets["depth_zoe"])
    asset("annotators", "annotators", assets["annotators"])
    register_model(session, tiny_spec("sdxl-inpaint", "sdxl", base_model="SDXL"), now=now)
    register_model(session, tiny_spec("inpaint-auto", "sdxl-controlnet", base_model="Real Vision XL"), now=now)
    register_model(session, tiny_spec("tiny-sd15", "sd15", source=str(sd15_dir)), now=now)


class Bench:
    """Runs request bodies in this process through the registry, the contract and the worker's path."""

    def __init__(self, url: str) -> None:
        from worker.engine.pipelines import PipelineCache

        upgrade(url)
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)
        self.cache = PipelineCache("cpu")

    def params(
        self, slug: str, body: dict[str, Any], image_size: tuple[int, int] = (64, 64)
    ) -> tuple[ModelSpec, JobParams]:
        with session_scope(self.sessions) as session:
            spec = find_model(session, slug)
            assert spec is not None, slug
            catalog = load_catalog(session)
        request = REQUEST_CLASSES[spec.family].model_validate({"prompt": "a cat", "image": "-", "mask": "-", **body})
        return spec, resolve_params(request, spec, image_size=image_size, rng=random.Random(0), catalog=catalog)

    def run(
        self, slug: str, body: dict[str, Any], image: Image.Image, mask: Image.Image, *, cache: Any = None
    ) -> tuple[list[Image.Image], list[bool] | None]:
        """Images and NSFW flags; `cache`: another PipelineCache (a fresh one never saw earlier jobs)."""
        from worker.jobs.runner import run_inference
        from worker.jobs.sources import resolve_sources

        spec, params = self.params(slug, body, image.size)
        with session_scope(self.sessions) as session:
            sources = resolve_sources(session, spec, params)
        steps: list[tuple[int, int]] = []
        images, nsfw = run_inference(
            cache or self.cache, sources, params, image, mask, on_step=lambda s, t: steps.append((s, t))
        )
        assert steps and steps[-1][0] == steps[-1][1], f"progress did not reach the end: {steps}"
        return images, nsfw

    def pixels(self, slug: str, body: dict[str, Any], image: Image.Image, mask: Image.Image, **kw: Any) -> Any:
        """The first image of a run, as a numpy array."""
        import numpy as np

        return np.asarray(self.run(slug, body, image, mask, **kw)[0][0])

    def register(self, spec: AssetSpec) -> None:
        with session_scope(self.sessions) as session:
            register_asset(session, spec, now=datetime.now(UTC))

    def close(self) -> None:
        self.cache.clear()
        self.engine.dispose()
