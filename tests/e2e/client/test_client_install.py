"""The client distribution installs on its own into a fresh virtual environment, with no torch and
no server package, and its CLI works from there against the live service."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[3]
OFFLINE_SIGNS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found for httpx",
)

CHECK = """
import importlib.metadata, importlib.util, json, sys
import inpaint_client
from inpaint_client import AsyncClient, Client, verify_webhook
from inpaint_client.cli import main
print(json.dumps({
    "installed": [m for m in ("torch", "diffusers", "fastapi", "api", "storage", "worker")
                  if importlib.util.find_spec(m) is not None],
    "requires": importlib.metadata.requires("inpaint-queue-client"),
    "file": inpaint_client.__file__,
}))
"""


def test_client_installs_alone_and_works(embedded: Stack, tmp_path: Path) -> None:
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "20",
            str(ROOT / "client"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if install.returncode != 0 and any(sign in install.stderr for sign in OFFLINE_SIGNS):
        pytest.skip(f"the package index cannot be reached for httpx: {install.stderr[-300:]}")
    assert install.returncode == 0, install.stderr

    env = {"PATH": f"{fresh / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    checked = subprocess.run(
        [str(python), "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    facts = json.loads(checked.stdout)
    assert facts["installed"] == [], f"the fresh environment has server packages: {facts['installed']}"
    assert [r.split(">")[0] for r in facts["requires"]] == ["httpx"]
    assert facts["file"].startswith(str(fresh)), "imported from somewhere else than the fresh install"

    done = subprocess.run(
        [
            str(fresh / "bin" / "inpaint"),
            "--url",
            embedded.base_url,
            "--key",
            embedded.user_key,
            "submit",
            str(ROOT / "docs/examples/photo.png"),
            str(ROOT / "docs/examples/mask.png"),
            "--prompt",
            "-",
            "--model",
            "erase",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_file()
