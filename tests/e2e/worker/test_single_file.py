"""Single-file checkpoints through the running service: a checkpoint URL registered over HTTP is fetched by
the worker (never the API) from a server on loopback, verified and run; a wrong sha256 fails the job; a
pickle is refused by `inpaint-admin` as by the API.

The tiny checkpoint holds the very weights of the stack's tiny model (worker.tiny.sd15, seed 0), in the
original Stable Diffusion layout, and is described by that model's directory as `config`: its pictures
must be the tiny model's, pixel for pixel."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import TINY_REGISTRATION, TINY_SLUG
from tests.e2e.worker.test_flow import fetch_outputs
from tests.support.http_server import Reply, ScriptedServer
from tests.support.images import job_body
from tests.support.stack import BIN, Stack

TINY_RANGES = {"max_side": 128, "default_size": 64, "steps": {"min": 1, "max": 50, "default": 2}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.support.checkpoints import save_single_file
    from worker.tiny.sd15 import build_tiny_pipeline

    path = save_single_file(build_tiny_pipeline(), tmp_path_factory.mktemp("checkpoint") / "tiny.safetensors")
    return path.read_bytes()


def test_a_checkpoint_url_is_fetched_by_the_worker_and_runs_like_its_directory(
    embedded: Stack, http_server: ScriptedServer, checkpoint: bytes, tiny_model_dir: Path
) -> None:
    http_server.routes["/api/download/models/7"] = Reply(302, headers={"Location": "/files/tiny.safetensors"})
    http_server.routes["/files/tiny.safetensors"] = Reply(200, checkpoint)
    registered = httpx.post(
        f"{embedded.base_url}/api/v1/enterprise/load_model",
        json={
            "key": embedded.admin_key,
            "model_id": "tiny-from-url",
            "url": f"{http_server.url}/api/download/models/7?token=secret",
            "sha256": hashlib.sha256(checkpoint).hexdigest(),
            "config": str(tiny_model_dir),
            **TINY_RANGES,
        },
        timeout=60,
    )
    assert registered.status_code == 200, registered.text
    job = embedded.submit("tiny-from-url", job_body(seed=11))
    status = embedded.wait(job)
    assert status["status"] == "COMPLETED", status
    same = embedded.submit(TINY_SLUG, job_body(seed=11))
    assert embedded.wait(same)["status"] == "COMPLETED"
    (single,) = fetch_outputs(embedded, job)[1]
    (folder,) = fetch_outputs(embedded, same)[1]
    assert single.shape == (64, 64, 3) and np.array_equal(single, folder)
    downloads = [r for r in http_server.received if r.path == "/files/tiny.safetensors"]
    assert len(downloads) == 1, "the checkpoint was downloaded more than once"
    assert downloads[0].headers["user-agent"].startswith("inpaint-queue"), "not the worker's egress client"


def test_a_checkpoint_whose_sha256_differs_fails_its_job_naming_both(
    embedded: Stack, http_server: ScriptedServer, checkpoint: bytes, tiny_model_dir: Path
) -> None:
    http_server.routes["/files/other.safetensors"] = Reply(200, checkpoint)
    wrong = "ab" * 32
    embedded.cli(
        "inpaint-admin",
        "models",
        "register",
        "tiny-wrong-hash",
        f"{http_server.url}/files/other.safetensors",
        *TINY_REGISTRATION,
        "--sha256",
        wrong,
        "--config",
        str(tiny_model_dir),
    )
    status = embedded.wait(embedded.submit("tiny-wrong-hash", job_body()))
    assert status["status"] == "FAILED" and status["error_code"] == "model_unavailable", status
    got = hashlib.sha256(checkpoint).hexdigest()
    assert status["error"] == (
        f"model 'tiny-wrong-hash' could not be loaded: its checkpoint's SHA-256 is {got}, but {wrong} was registered"
    )


def test_the_admin_cli_refuses_a_pickle_and_a_private_url(embedded: Stack) -> None:
    for source, reason in [
        ("/models/v1-5-pruned-emaonly.ckpt", "SOURCE: is a pickled checkpoint (.ckpt)"),
        ("http://10.1.2.3/model.safetensors", "SOURCE: the host resolves to an address that is not public"),
    ]:
        refused = subprocess.run(
            [str(BIN / "inpaint-admin"), "models", "register", "refused", source, "--family", "sd15"],
            env=embedded.process_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
    assert "refused" not in embedded.cli("inpaint-admin", "models", "list")
