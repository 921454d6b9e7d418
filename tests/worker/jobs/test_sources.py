"""Where a job's weights come from, read from a real database (SQLite and PostgreSQL): a base_model that
is a single-file checkpoint brings its sha256 and config along, and replaces the model's own."""

from __future__ import annotations

import pytest

from storage.contract.assets import AssetSpec
from storage.contract.specs import ModelSpec
from storage.database.assets import find_asset, register_asset
from storage.database.jobs import utcnow
from storage.errors import JobFailure
from worker.jobs.sources import weights_of

SHA = "c0" * 32


def test_a_base_models_checkpoint_fields_go_with_its_weights(db) -> None:
    base = AssetSpec(
        kind="base_model",
        name="Community XL",
        source="https://93.184.216.34/api/download/models/9",
        family="sdxl",
        sha256=SHA,
        config="/models/sdxl-inpainting",
    )
    register_asset(db, base, now=utcnow())
    assert find_asset(db, "base_model", "Community XL") == base, "sha256 and config come back as fields"
    own = ModelSpec(slug="xl", family="sdxl", source="/models/own.safetensors", sha256="d1" * 32, config="/models/o")
    weights = weights_of(db, own, "Community XL")
    assert (weights.source, weights.sha256, weights.config) == (base.source, SHA, "/models/sdxl-inpainting")
    assert weights.base_model == "Community XL"
    plain = weights_of(db, own, "Juggernaut XL")  # a built-in hub id: no checkpoint fields
    assert (plain.source, plain.sha256, plain.config) == ("RunDiffusion/Juggernaut-XL-v9", None, None)
    assert weights_of(db, own, None) is own
    with pytest.raises(JobFailure, match="base_model 'Gone XL' is no longer registered"):
        weights_of(db, own, "Gone XL")
