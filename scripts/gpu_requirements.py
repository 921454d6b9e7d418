"""Are the GPU kit's Python needs met: by the wheelhouse and the GPU image's package list, or as installed?

    .venv/bin/python scripts/gpu_requirements.py plan .whl scripts/gpu-image-packages.txt    # what to fetch
    .venv/bin/python scripts/gpu_requirements.py wheels .whl scripts/gpu-image-packages.txt  # the check
    python3 scripts/gpu_requirements.py installed        # on the GPU machine, in the kit's interpreter

The needs start from pyproject.toml (the dependencies and the `worker` extra) and boto3, which the
service phase imports through tests/support. A need met by a wheel (or an installed distribution)
brings that distribution's own Requires-Dist, with markers read for CPython 3.12 on Linux x86-64
(installed: for this interpreter) and extras only where asked for. A need met by the image's list
stops there: the image is taken to be consistent with itself. Versions are checked where known; the
image list gives few, so the others are printed to be confirmed there by the `installed` mode.
Exit status 1 when a need is missing or the wrong version. `plan` prints NAME==VERSION, at this
interpreter's versions, for each distribution still to be fetched into the wheelhouse. `installed`
first names the interpreter, torch and its GPU, and imports the service's and the engine's entry
modules (ENTRY_MODULES), so that a missing import shows before any phase of the kit needs it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRA_ROOTS = ["boto3"]
ENTRY_MODULES = ["api.app", "worker.main", "worker.jobs.context", "worker.engine.sdxl", "benchmarks.service_vs_raw"]
"""What the API, an inference worker at its start, the engine and the service phase import."""
NOT_CARRIED = {
    "torch": "the image's CUDA build is used, not the CPU pin",
    "psycopg": "PostgreSQL only; the kit runs the embedded topology",
    "watchfiles": "uvicorn's --reload only",
    "websockets": "the API serves no WebSocket",
}
CARRY_ANYWAY = {
    "click": "celery needs >=8.3.1",
    "packaging": "kombu's redis extra pins ==26.3",
    "python-dateutil": "celery pins ==2.9.0.post0",
    "typing-extensions": "pydantic needs >=4.16",
}
"""Distributions the image has at a version its list does not give: carried at this environment's."""
DEVICE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


@dataclass(frozen=True)
class Dist:
    version: str | None
    requires: list[str] | None
    """None: not followed (an image package, whose own needs the image meets)."""
    origin: str


def wheel_dists(folder: Path) -> dict[str, Dist]:
    dists = {}
    for wheel in sorted(folder.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            meta = HeaderParser().parsestr(archive.read(name).decode())
        dists[canonicalize_name(meta["Name"])] = Dist(meta["Version"], meta.get_all("Requires-Dist") or [], "wheel")
    return dists


def image_dists(listing: Path) -> dict[str, Dist]:
    dists = {}
    for line in listing.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            dists[canonicalize_name(name)] = Dist(version or None, None, "image")
    return dists


def installed_dists() -> dict[str, Dist]:
    dists: dict[str, Dist] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        dists.setdefault(name, Dist(dist.version, dist.requires or [], "installed"))  # first on sys.path wins
    return dists


def root_needs() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["worker"], *EXTRA_ROOTS]


def applies(requirement: Requirement, extras: set[str], markers: dict[str, str] | None) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**(markers or {}), "extra": extra}) for extra in extras | {""})


def walk(dists: dict[str, Dist], markers: dict[str, str] | None) -> tuple[dict[str, Dist], dict[str, str], list[str]]:
    """(distributions used, problem by distribution name, needs whose version is unknown here)."""
    used: dict[str, Dist] = {}
    problems: dict[str, str] = {}
    unknown: list[str] = []
    followed: set[tuple[str, frozenset[str]]] = set()
    pending = [(Requirement(need), "pyproject.toml") for need in root_needs()]
    while pending:
        requirement, wanted_by = pending.pop()
        name = canonicalize_name(requirement.name)
        dist = dists.get(name)
        if name in NOT_CARRIED:
            continue
        if dist is None:
            problems[name] = f"missing: {requirement} (for {wanted_by})"
            continue
        used[name] = dist
        if dist.version is None:
            if requirement.specifier:
                unknown.append(f"{requirement} (for {wanted_by})")
        elif not requirement.specifier.contains(dist.version, prereleases=True):
            problems[name] = f"version: {requirement} (for {wanted_by}), but {dist.origin} has {dist.version}"
        key = (name, frozenset(requirement.extras))
        if dist.requires is None or key in followed:
            continue
        followed.add(key)
        for need in dist.requires:
            child = Requirement(need)
            if applies(child, set(requirement.extras), markers):
                pending.append((child, name))
    return used, problems, sorted(set(unknown))


def plan(dists: dict[str, Dist], problems: dict[str, str]) -> list[str]:
    """NAME==VERSION, at this interpreter's version (NAME alone where it has none), for each problem,
    each of CARRY_ANYWAY, and each wheel of another version than this interpreter's."""
    pins = []
    for name in sorted({*problems, *CARRY_ANYWAY, *(n for n, d in dists.items() if d.origin == "wheel")}):
        try:
            local: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            local = None
        have = dists.get(name)
        if name not in problems and have and have.origin == "wheel" and local in (None, have.version):
            continue
        pins.append(f"{name}=={local}" if local else name)
    return pins


def report(used: dict[str, Dist], problems: dict[str, str], unknown: list[str]) -> int:
    origins = sorted({d.origin for d in used.values()})
    counts = ", ".join(f"{sum(d.origin == o for d in used.values())} {o}" for o in origins)
    print(f"needs met by {len(used)} distributions ({counts}):")
    print("  " + " ".join(f"{name}=={d.version or '?'}" for name, d in sorted(used.items())))
    print("not carried: " + "; ".join(f"{name} ({why})" for name, why in NOT_CARRIED.items()))
    print("carried though the image has them: " + "; ".join(f"{n} ({why})" for n, why in CARRY_ANYWAY.items()))
    if unknown:
        print("versions the image list does not give, to confirm with the `installed` mode there:")
        print("  " + "\n  ".join(unknown))
    for problem in sorted(problems.values()):
        print(f"PROBLEM {problem}")
    print("requirements: " + ("FAIL" if problems else "PASS"))
    return 1 if problems else 0


def describe_interpreter() -> None:
    import torch  # this mode alone needs it

    cuda = torch.version.cuda
    print(f"python {platform.python_version()} at {sys.executable}; torch {torch.__version__}, CUDA {cuda}")
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0)
        memory = gpu.total_memory / 2**30
        print(f"GPU: {gpu.name}, {memory:.0f} GiB, {gpu.multi_processor_count} SMs, compute {gpu.major}.{gpu.minor}")
    sys.path.insert(0, str(ROOT))
    for module in ENTRY_MODULES:
        importlib.import_module(module)
    print(f"imports: {', '.join(ENTRY_MODULES)}: ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode, text in (("plan", "the pins still to fetch"), ("wheels", "check the wheelhouse and the image list")):
        sub = modes.add_parser(mode, help=text)
        sub.add_argument("wheelhouse", type=Path)
        sub.add_argument("image_list", type=Path)
    modes.add_parser("installed", help="check what this interpreter imports")
    args = parser.parse_args(argv)
    if args.mode == "installed":
        describe_interpreter()
        return report(*walk(installed_dists(), None))
    dists = {**image_dists(args.image_list), **wheel_dists(args.wheelhouse)}
    used, problems, unknown = walk(dists, DEVICE_MARKERS)
    if args.mode == "plan":
        print("\n".join(plan(dists, problems)))
        return 0
    return report(used, problems, unknown)


if __name__ == "__main__":
    sys.exit(main())
