"""The images and installs are locked: one lock (constraints.txt) covers every requirement,
the Dockerfile installs dependencies before the code, and only the worker image carries torch."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CLIENT = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
HEAVY = {"torch", "diffusers", "transformers", "accelerate", "peft", "opencv-python-headless"}


def lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def every_requirement() -> list[Requirement]:
    lists = [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values(), CLIENT["dependencies"]]
    return [Requirement(text) for deps in lists for text in deps]


def requirements_for(*extras: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "requirements.py"), *extras],
        capture_output=True,
        text=True,
        check=True,
    )
    return {canonicalize_name(Requirement(line).name) for line in result.stdout.splitlines()}


def stages() -> dict[str, list[str]]:
    """Each Dockerfile stage's instructions, with the stage it is built FROM first."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        if match := re.match(r"FROM (\S+) AS (\S+)", line):
            current = found.setdefault(match[2], [f"FROM {match[1]}"])
        elif line.strip() and not line.startswith("#"):
            current.append(line.strip())
    return found


def chain(name: str, all_stages: dict[str, list[str]]) -> list[str]:
    """A stage's instructions with those of the stages it builds on, in build order."""
    lines = all_stages[name]
    parent = lines[0].removeprefix("FROM ")
    return (chain(parent, all_stages) if parent in all_stages else []) + lines[1:]


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    pins = lock()
    for requirement in every_requirement():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt; run scripts/lock"
        assert pins[name] in requirement.specifier, f"constraints.txt pins {name} {pins[name]}, not in {requirement}"


def test_torch_has_one_pin_everywhere() -> None:
    (torch,) = [r for r in every_requirement() if r.name == "torch"]
    bootstrap = re.search(r'TORCH_VERSION="([^"]+)"', (ROOT / "scripts" / "bootstrap.sh").read_text())
    assert bootstrap is not None
    assert str(torch.specifier) == f"=={bootstrap[1]}" and lock()["torch"] == Version(bootstrap[1])


def test_diffusers_and_transformers_stop_before_their_next_major() -> None:
    for requirement in every_requirement():
        if requirement.name in ("diffusers", "transformers"):
            assert any(spec.operator == "<" for spec in requirement.specifier), requirement


def test_installs_use_the_lock() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    installs = [line for line in bootstrap.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    stamp = re.search(r"stamp=.*", bootstrap)
    assert stamp is not None and "constraints.txt" in stamp[0], "a new lock reinstalls"


def test_the_api_image_carries_no_torch_and_the_worker_image_does() -> None:
    api, worker = requirements_for(), requirements_for("worker")
    assert not api & HEAVY, api & HEAVY
    assert HEAVY <= worker


def test_each_image_installs_its_dependencies_before_the_code() -> None:
    all_stages = stages()
    for target, extra in (("api", ""), ("worker", "worker")):
        lines = chain(target, all_stages)
        deps = next(i for i, line in enumerate(lines) if "pip install -c constraints.txt -r requirements.txt" in line)
        assert f"python requirements.py {extra}".strip() in lines[deps], (target, lines[deps])
        code = next(i for i, line in enumerate(lines) if line.startswith("COPY --from=source"))
        assert deps < code, f"{target}: the code is copied before the dependencies install"
        assert "RUN pip install --no-deps -e ." in lines[code:], target
        assert not any(line.startswith("COPY . ") for line in lines), target
    source = all_stages["source"]
    for package in ("admin", "api", "worker", "storage", "migrations"):
        assert any(line.startswith(f"COPY {package} ") for line in source), f"the images lack {package}/"
