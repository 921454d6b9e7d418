"""Named model components registered at run time (the `model_assets` table), over the built-in ones
(storage.contract.assets), which a registration may override: that is how an offline
machine, or a test, points "SDXL" at a local directory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.contract.assets import BUILTIN_ASSETS, AssetCatalog, AssetSpec
from storage.database.models import ModelAsset

STORED_FIELDS = ("family", "sha256", "config")
"""AssetSpec fields kept in the row's `options` JSON beside the kind's own options."""


def _from_row(row: ModelAsset) -> AssetSpec:
    options = dict(row.options)
    fields = {name: options.pop(name, None) for name in STORED_FIELDS}
    return AssetSpec(kind=row.kind, name=row.name, source=row.source, options=options, **fields)


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
    nothing was updated): the SQLite convention of storage.database.engine."""
    options = {**spec.options, **{name: getattr(spec, name) for name in STORED_FIELDS if getattr(spec, name)}}
    updated = session.execute(
        update(ModelAsset)
        .where(_same(spec.kind, spec.name))
        .values(source=spec.source, options=options)
        .execution_options(synchronize_session=False)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(ModelAsset(kind=spec.kind, name=spec.name, source=spec.source, options=options, created_at=now))
    session.flush()


def delete_asset(session: Session, kind: str, name: str) -> str | None:
    """Remove a registration (a built-in it overrode comes back). Returns the source it had, or None
    when nothing was registered. A single DELETE: it writes first."""
    stmt = delete(ModelAsset).where(_same(kind, name)).returning(ModelAsset.source)
    return session.execute(stmt.execution_options(synchronize_session=False)).scalar_one_or_none()


def load_catalog(session: Session) -> AssetCatalog:
    """Every asset name a request may use, read once (resolution then stays pure)."""
    return AssetCatalog(list_assets(session))
