"""scripts/gpu-kit on this CPU: its dry run goes through every phase at tiny size with the commands a
GPU machine runs, and leaves the files docs/performance.md ("GPU kit") describes; and
scripts/gpu_requirements.py, which builds and checks the wheelhouse, finds what is missing or too old."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHASES = ["env", "check", "eager", "service", "compiled"]


def requirements_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_requirements", ROOT / "scripts" / "gpu_requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of every Markdown table in `text` whose first column is `first_header`, as dicts."""
    rows: list[dict[str, str]] = []
    headers: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            headers = []
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == first_header:
            headers = cells
        elif headers and not set(line) <= set("|- "):
            rows.append(dict(zip(headers, cells, strict=True)))
    return rows


def test_the_wheelhouse_check_finds_a_missing_need_and_a_wrong_version(tmp_path: Path) -> None:
    script = requirements_script()
    image = tmp_path / "image.txt"
    image.write_text("# the image\nhuggingface-hub==1.0\nnumpy\n")
    diffusers = script.Dist("0.42.1", ["huggingface-hub>=1.32.0", "numpy", "tomli; python_version < '3.11'"], "wheel")
    _, problems, _ = script.walk({**script.image_dists(image), "diffusers": diffusers}, script.DEVICE_MARKERS)
    assert problems["huggingface-hub"] == "version: huggingface-hub>=1.32.0 (for diffusers), but image has 1.0"
    assert problems["fastapi"] == "missing: fastapi>=0.115 (for pyproject.toml)"
    assert "numpy" not in problems and "tomli" not in problems, "met, or not for CPython 3.12"
    assert "torch" not in problems, "the image's own build is used"
    pins = script.plan(script.image_dists(image), problems)
    assert "fastapi==" + script.importlib.metadata.version("fastapi") in pins


@pytest.mark.e2e  # the service phase starts the API and an inference worker
@pytest.mark.timeout(900)
def test_the_dry_run_goes_through_every_phase_and_the_checks_pass(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "gpu-kit"), "--device", "cpu", "--tiny"],
        cwd=ROOT,
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["summary.md", *(f"{p}.txt" for p in PHASES)])
    summary = (tmp_path / "summary.md").read_text()
    assert {row["phase"]: row["status"] for row in table(summary, "phase")} == dict.fromkeys(PHASES, "ok")
    for line in ("- command: `scripts/gpu-kit --device cpu --tiny`", "- date: 20", "- device: CPU: ", "- commit: "):
        assert line in summary

    env = (tmp_path / "env.txt").read_text()
    assert "requirements: PASS" in env and "benchmarks.service_vs_raw: ok" in env

    check = (tmp_path / "check.txt").read_text()
    assert "FAIL" not in check and "check: PASS (8 of 8 passed)" in check
    for family in ("sd15 64 px", "sdxl 128 px"):
        for name in ("finite", "unmasked pixels", "same seed", "batched vs solo"):
            assert f"PASS {family} float32: {name}: " in check

    eager = table((tmp_path / "eager.txt").read_text(), "model")
    paths = {(row["model"], row["path"]) for row in eager}
    assert paths == {(m, p) for m in ("sd15", "sdxl") for p in ("worker", "batched jobs", "raw", "worker / raw")}
    assert all(float(row["images/s"]) > 0 for row in eager)

    service = table((tmp_path / "service.txt").read_text(), "INPAINT_MAX_BATCH_SIZE")
    assert [row["INPAINT_MAX_BATCH_SIZE"] for row in service] == ["1", "4"]
    assert all(float(row["service images/s"]) > 0 and float(row["raw images/s"]) > 0 for row in service)

    compiled = (tmp_path / "compiled.txt").read_text()
    assert "UNet compiled (torch.compile, inductor)" in compiled
    assert [(row["model"], row["path"]) for row in table(compiled, "model")] == [("sd15", "worker")]
