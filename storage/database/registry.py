"""The model registry in the database: slugs registered at run time, over the built-in ones.

A registered slug may override a built-in (storage.contract.specs.BUILTIN).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.contract.specs import BUILTIN, ModelSpec
from storage.database.models import RegisteredModel


def find_model(session: Session, slug: str) -> ModelSpec | None:
    """The spec of this slug: a registered one first, then a built-in; None if unknown."""
    row = session.get(RegisteredModel, slug)
    if row is not None:
        return spec_from_row(row)
    return BUILTIN.get(slug)


def spec_from_row(row: RegisteredModel) -> ModelSpec:
    return ModelSpec(slug=row.slug, family=row.family, source=row.source, **row.options)


def register_model(session: Session, spec: ModelSpec, *, now: datetime) -> None:
    """Insert or replace the registration of `spec.slug`. Writes first (UPDATE, then INSERT if
    nothing was updated): the SQLite convention of storage.database.engine."""
    options = spec.model_dump(mode="json", exclude={"slug", "family", "source", "ranges_of"})  # ranges_of: per route
    values = {"family": spec.family, "source": spec.source, "options": options}
    updated = session.execute(
        update(RegisteredModel)
        .where(RegisteredModel.slug == spec.slug)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(RegisteredModel(slug=spec.slug, created_at=now, **values))
    session.flush()


def delete_model(session: Session, slug: str) -> str | None:
    """Remove a registration (a built-in slug it overrode comes back). Returns the source it had,
    or None when nothing was registered. A single DELETE: it writes first."""
    stmt = delete(RegisteredModel).where(RegisteredModel.slug == slug).returning(RegisteredModel.source)
    return session.execute(stmt.execution_options(synchronize_session=False)).scalar_one_or_none()


def list_models(session: Session) -> list[ModelSpec]:
    registered = [spec_from_row(r) for r in session.execute(select(RegisteredModel)).scalars()]
    names = {s.slug for s in registered}
    return sorted([*registered, *(s for s in BUILTIN.values() if s.slug not in names)], key=lambda s: s.slug)
