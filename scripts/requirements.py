"""Print the project's requirements for the given extras, one a line, from pyproject.toml.

The Dockerfile installs them (with -c constraints.txt) before it copies the code, so that a
change of code reuses the dependency layer:

    python requirements.py            # the API tier: no torch
    python requirements.py worker     # plus the worker extra
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extra {unknown[0]!r}; pyproject.toml has: {', '.join(sorted(optional))}")
    return [*project["dependencies"], *(dep for extra in extras for dep in optional[extra])]


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    pyproject = here / "pyproject.toml" if (here / "pyproject.toml").exists() else here.parent / "pyproject.toml"
    sys.stdout.write("".join(f"{line}\n" for line in requirements(pyproject, sys.argv[1:])))
