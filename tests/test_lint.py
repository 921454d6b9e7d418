"""The rules that check themselves: ruff (lint and format), mypy and the import contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ["api", "worker", "storage", "admin", "tests", "benchmarks", "migrations", "client"]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    """Bugbear, import order and no print in library code, on the whole tree, the client included."""
    result = run("ruff", "check", *TREE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    result = run("ruff", "format", "--check", *TREE)
    assert result.returncode == 0, "run `.venv/bin/ruff format .`:\n" + result.stdout + result.stderr


def test_mypy_passes() -> None:
    """Over api, worker, storage and admin, strict ([tool.mypy]): unused `type: ignore` comments
    are errors too."""
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept() -> None:
    """The layer rules of [tool.importlinter] (docs/architecture.md draws them)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
