"""The README stays true to the code: every setting and every scheduler name is documented."""

from __future__ import annotations

from pathlib import Path

from storage.contract.schedulers import SCHEDULERS
from storage.contract.specs import BUILTIN
from storage.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        env = "PORT" if name == "port" else f"INPAINT_{name.upper()}"
        assert f"`{env}`" in README or f"{env}`" in README, f"{env} is not documented"


def test_every_scheduler_name_is_in_the_table() -> None:
    for name in SCHEDULERS:
        assert f"`{name}`" in README, f"scheduler {name!r} is not documented"


def test_every_builtin_model_is_documented() -> None:
    for slug in BUILTIN:
        assert f"`{slug}`" in README


def test_the_two_commands() -> None:
    assert "./scripts/serve" in README and "./scripts/test" in README
