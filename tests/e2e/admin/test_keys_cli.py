"""Keys from the command line: real `inpaint-admin` processes on a data directory.

The key from configuration (INPAINT_BOOTSTRAP_API_KEY) is tests/api/test_app.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.stack import BIN


def admin_cli(data_dir: Path) -> Callable[..., str]:
    """`inpaint-admin` on this data directory; returns what it prints, raises if it fails."""
    env = {**os.environ, "INPAINT_DATA_DIR": str(data_dir)}

    def admin(*args: str) -> str:
        return subprocess.run(
            [str(BIN / "inpaint-admin"), *args], env=env, capture_output=True, text=True, check=True
        ).stdout

    return admin


def test_first_run_creates_one_key_once(tmp_path) -> None:
    admin = admin_cli(tmp_path)
    admin("migrate")
    first = admin("keys", "first-run")
    assert "iq_" in first
    second = admin("keys", "first-run")
    assert "iq_" not in second and "already exists" in second
    listing = admin("keys", "list")
    assert "first-run" in listing and first.split("iq_")[1][:6] in listing
    assert first.split(": ")[-1].strip() not in listing, "the full key is printed again"


def test_limits_are_set_at_creation_changed_by_update_and_listed(tmp_path) -> None:
    admin = admin_cli(tmp_path)
    admin("migrate")
    admin(
        "keys",
        "create",
        "--name",
        "limited",
        "--models",
        "erase,sd1.5-inpainting",
        "--credits",
        "10",
        "--rate",
        "30",
        "--burst",
        "5",
    )
    assert "erase,sd1.5-inpainting\t10 credits\t30/min burst 5" in admin("keys", "list")
    admin("keys", "update", "1", "--credits", "unlimited", "--models", "all")
    assert "all models\tunlimited credits\t30/min burst 5" in admin("keys", "list")
    admin("keys", "update", "1", "--rate", "0", "--burst", "default")
    assert "all models\tunlimited credits\tno rate limit" in admin("keys", "list")
    refused = subprocess.run(
        [str(BIN / "inpaint-admin"), "keys", "update", "1", "--burst", "0"],
        env={**os.environ, "INPAINT_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "--burst" in refused.stderr
