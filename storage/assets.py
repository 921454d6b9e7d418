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

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.models import ModelAsset

AssetKind = Literal[
    "base_model", "controlnet", "lora", "vae", "embeddings", "depth_estimator", "safety_checker"
]
ASSET_KINDS: tuple[str, ...] = (
    "base_model",
    "controlnet",
    "lora",
    "vae",
    "embeddings",
    "depth_estimator",
    "safety_checker",
)
ASSET_LABELS: dict[str, str] = {
    "base_model": "base_model",
    "controlnet": "cn_model",
    "lora": "lora_model",
    "vae": "vae",
    "embeddings": "embeddings_model",
    "depth_estimator": "depth estimator",
    "safety_checker": "safety checker",
}
DEFAULT_SAFETY_CHECKER = "default"
DEPTH_ESTIMATOR = "depth"


class AssetSpec(BaseModel):
    """One named component. `family` (sd15 or sdxl), when set, limits which models may use it.

    Options by kind: safety_checker `score_offset` (float, default 0): added to every concept
    score before the `> 0` test, like diffusers' own `adjustment`; positive flags more images,
    negative fewer. embeddings `token` (default: the name): the word that triggers it in a prompt.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AssetKind
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^,]+$")
    source: str = Field(min_length=1, description="Hub id, local directory or local file.")
    family: Literal["sd15", "sdxl"] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)


def _builtin(
    kind: AssetKind, name: str, source: str, family: Literal["sd15", "sdxl"] | None = None
) -> AssetSpec:
    return AssetSpec(kind=kind, name=name, source=source, family=family)


BUILTIN_ASSETS: dict[tuple[str, str], AssetSpec] = {
    (a.kind, a.name): a
    for a in [
        # seeds/000 base_model names.
        _builtin("base_model", "SDXL", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "sdxl"),
        _builtin("base_model", "Real Vision XL", "SG161222/RealVisXL_V4.0", "sdxl"),
        _builtin("base_model", "Juggernaut XL", "RunDiffusion/Juggernaut-XL-v9", "sdxl"),
        _builtin("base_model", "DreamShaper XL", "Lykon/dreamshaper-xl-1-0", "sdxl"),
        # seeds/000 cn_model names.
        _builtin("controlnet", "Canny", "diffusers/controlnet-canny-sdxl-1.0", "sdxl"),
        _builtin("controlnet", "Depth", "diffusers/controlnet-depth-sdxl-1.0", "sdxl"),
        _builtin("controlnet", "SoftEdge", "SargeZT/controlnet-sd-xl-1.0-softedge-dexined", "sdxl"),
        _builtin("controlnet", "Openpose", "thibaud/controlnet-openpose-sdxl-1.0", "sdxl"),
        # The models behind cn_processor "depth" and safety_checker "yes".
        _builtin("depth_estimator", DEPTH_ESTIMATOR, "Intel/dpt-hybrid-midas"),
        _builtin("safety_checker", DEFAULT_SAFETY_CHECKER, "CompVis/stable-diffusion-safety-checker"),
    ]
}


def _from_row(row: ModelAsset) -> AssetSpec:
    options = dict(row.options)
    family = options.pop("family", None)
    return AssetSpec(
        kind=row.kind,
        name=row.name,
        source=row.source,
        family=family,  # type: ignore[arg-type]
        options=options,
    )


def find_asset(session: Session, kind: str, name: str) -> AssetSpec | None:
    """The registered asset of this kind and name, else the built-in one, else None."""
    row = session.get(ModelAsset, (kind, name))
    if row is not None:
        return _from_row(row)
    return BUILTIN_ASSETS.get((kind, name))


def list_assets(session: Session, kind: str | None = None) -> list[AssetSpec]:
    stmt = select(ModelAsset) if kind is None else select(ModelAsset).where(ModelAsset.kind == kind)
    registered = {(r.kind, r.name): _from_row(r) for r in session.execute(stmt).scalars()}
    builtin = {k: v for k, v in BUILTIN_ASSETS.items() if kind is None or k[0] == kind}
    merged = {**builtin, **registered}
    return sorted(merged.values(), key=lambda a: (a.kind, a.name))


def _same(kind: str, name: str) -> Any:
    return (ModelAsset.kind == kind) & (ModelAsset.name == name)


def register_asset(session: Session, spec: AssetSpec, *, now: datetime) -> None:
    """Insert or replace the asset `(spec.kind, spec.name)`. Writes first (UPDATE, then INSERT if
    nothing was updated): the SQLite convention of storage.db."""
    options = {**spec.options, **({"family": spec.family} if spec.family else {})}
    updated = session.execute(
        update(ModelAsset)
        .where(_same(spec.kind, spec.name))
        .values(source=spec.source, options=options)
        .execution_options(synchronize_session=False)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(
            ModelAsset(kind=spec.kind, name=spec.name, source=spec.source, options=options, created_at=now)
        )
    session.flush()


def delete_asset(session: Session, kind: str, name: str) -> str | None:
    """Remove a registration (a built-in it overrode comes back). Returns the source it had, or None
    when nothing was registered. A single DELETE: it writes first."""
    stmt = delete(ModelAsset).where(_same(kind, name)).returning(ModelAsset.source)
    return session.execute(stmt.execution_options(synchronize_session=False)).scalar_one_or_none()


class AssetCatalog:
    """The asset names a request may use, by kind, read once per request (resolution stays pure)."""

    def __init__(self, assets: list[AssetSpec]) -> None:
        self._by_key = {(a.kind, a.name): a for a in assets}

    @classmethod
    def load(cls, session: Session) -> AssetCatalog:
        return cls(list_assets(session))

    def get(self, kind: str, name: str) -> AssetSpec | None:
        return self._by_key.get((kind, name))

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self._by_key if k == kind)
