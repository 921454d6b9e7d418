"""The `inpaint` command, run as a real subprocess against the live embedded stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import TINY_SLUG
from tests.support.images import box_mask, png_bytes, scene
from tests.support.stack import BIN, Stack

ROOT = Path(__file__).resolve().parents[3]
PHOTO, MASK = ROOT / "docs/examples/photo.png", ROOT / "docs/examples/mask.png"


def inpaint(
    stack: Stack | None, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with the stack's URL and key in the environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPAINT_API", "SEGMIND"))}
    if stack is not None:
        base |= {"INPAINT_API_URL": stack.base_url, "INPAINT_API_KEY": stack.user_key}
    return subprocess.run(
        [str(BIN / "inpaint"), *argv], env=base | (env or {}), cwd=cwd, capture_output=True, text=True, timeout=300
    )


def kept_pixels_of_example(path: Path) -> None:
    out = np.asarray(Image.open(path).convert("RGB"))
    original = np.asarray(Image.open(PHOTO).convert("RGB"))
    keep = np.asarray(Image.open(MASK).convert("L")) < 128
    assert out.shape == original.shape
    assert np.array_equal(out[keep], original[keep]), "unmasked pixels differ from the input"


def test_submit_saves_the_images(embedded: Stack, tmp_path: Path) -> None:
    done = inpaint(
        embedded, "submit", str(PHOTO), str(MASK), "--prompt", "remove it", "--model", "erase", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    (saved,) = [Path(line) for line in done.stdout.splitlines()]
    assert saved.parent == tmp_path and saved.suffix == ".png"
    kept_pixels_of_example(saved)
    assert "100% completed" in done.stderr and "submitted " in done.stderr


def test_submit_shows_step_progress_from_the_stream(embedded: Stack, tmp_path: Path) -> None:
    done = inpaint(
        embedded,
        "--url",
        embedded.base_url,
        "--key",
        embedded.user_key,
        "submit",
        str(PHOTO),
        str(MASK),
        "--prompt",
        "a red apple",
        "--model",
        TINY_SLUG,
        "--seed",
        "5",
        "--param",
        "num_inference_steps=8",
        "--param",
        "img_width=64",
        "--param",
        "img_height=64",
        "--out",
        str(tmp_path),
        env={"INPAINT_API_KEY": "iq_wrong"},
    )
    assert done.returncode == 0, done.stderr
    assert "step " in done.stderr and "/8" in done.stderr, done.stderr
    (saved,) = [Path(line) for line in done.stdout.splitlines()]
    assert Image.open(saved).size == (64, 64)
    assert "seed 5" in done.stderr


def test_status_cancel_and_download(embedded: Stack, tmp_path: Path) -> None:
    queued = inpaint(
        embedded,
        "submit",
        str(PHOTO),
        str(MASK),
        "--prompt",
        "-",
        "--model",
        TINY_SLUG,
        "--no-wait",
        "--param",
        "num_inference_steps=50",
        "--param",
        "img_width=64",
        "--param",
        "img_height=64",
    )
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip()
    cancelled = inpaint(embedded, "cancel", request_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = inpaint(embedded, "cancel", request_id)
    assert again.returncode == 1 and "already failed" in again.stdout
    status = inpaint(embedded, "status", request_id)
    assert status.returncode == 1 and "FAILED" in status.stdout and "cancelled" in status.stdout
    as_json = inpaint(embedded, "status", request_id, "--json")
    assert json.loads(as_json.stdout)["error_code"] == "cancelled"
    missing = inpaint(embedded, "status", "no-such-request")
    assert missing.returncode == 1 and "404" in missing.stderr

    finished = inpaint(embedded, "submit", str(PHOTO), str(MASK), "--prompt", "-", "--model", "erase", "--no-wait")
    finished_id = finished.stdout.strip()
    embedded.wait(finished_id)
    assert inpaint(embedded, "status", finished_id).stdout.split()[1] == "COMPLETED"
    download = inpaint(embedded, "download", finished_id, "--out", str(tmp_path))
    assert download.returncode == 0 and Path(download.stdout.strip()).name == f"{finished_id}-0.png"
    kept_pixels_of_example(Path(download.stdout.strip()))


def test_batch_file(embedded: Stack, tmp_path: Path) -> None:
    shutil.copy(PHOTO, tmp_path / "photo.png")
    shutil.copy(MASK, tmp_path / "mask.png")
    lines = [
        {"model": "erase", "prompt": "-", "image": "photo.png", "mask": "mask.png"},
        "# a comment",
        {"prompt": "-", "image": "photo.png", "mask": "mask.png", "samples": 9},
        {
            "model": TINY_SLUG,
            "prompt": "a red apple",
            "image": "photo.png",
            "mask": "mask.png",
            "img_width": 64,
            "img_height": 64,
            "num_inference_steps": 3,
        },
        "",
        {"model": "no-such-model", "prompt": "-", "image": "photo.png", "mask": "mask.png"},
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "out"
    done = inpaint(embedded, "batch", str(jobs), "--model", "erase", "--out", str(out), "--interval", "0.2")
    assert done.returncode == 1, "rejected items make the run fail"
    assert sorted(Path(p).name for p in done.stdout.split()) == ["0001-0.png", "0004-0.png"]
    kept_pixels_of_example(out / "0001-0.png")
    assert "line 3: rejected (HTTP 400): samples" in done.stderr
    assert "line 6: rejected (HTTP 404)" in done.stderr
    assert "2 completed, 0 failed, 2 rejected" in done.stderr


def test_batch_of_more_than_100_jobs_is_sent_in_chunks(embedded: Stack, tmp_path: Path) -> None:
    (tmp_path / "i.png").write_bytes(png_bytes(scene((16, 16))))
    (tmp_path / "m.png").write_bytes(png_bytes(box_mask((16, 16))))
    line = json.dumps({"prompt": "-", "image": "i.png", "mask": "m.png"})
    jobs = tmp_path / "many.jsonl"
    jobs.write_text("\n".join([line] * 101))
    done = inpaint(
        embedded, "batch", str(jobs), "--model", "erase", "--out", str(tmp_path / "out"), "--interval", "0.5"
    )
    assert done.returncode == 0, done.stderr
    assert "101 jobs in 2 batch(es)" in done.stderr and "101 completed" in done.stderr
    assert len(list((tmp_path / "out").iterdir())) == 101
    assert "101/101 done" in done.stderr


def test_failures_have_messages_and_exit_codes(embedded: Stack, tmp_path: Path) -> None:
    no_key = inpaint(None, "--url", embedded.base_url, "status", "x")
    assert no_key.returncode == 2 and "no API key" in no_key.stderr
    missing = inpaint(embedded, "submit", str(tmp_path / "nope.png"), str(MASK), "--prompt", "-")
    assert missing.returncode == 2 and "nope.png" in missing.stderr
    refused = inpaint(
        embedded, "submit", str(PHOTO), str(MASK), "--prompt", "-", "--model", "erase", "--param", "samples=9"
    )
    assert refused.returncode == 1 and "samples" in refused.stderr and "400" in refused.stderr
    embedded.register_missing_model("cli-missing", tmp_path)
    failed = inpaint(
        embedded, "submit", str(PHOTO), str(MASK), "--prompt", "-", "--model", "cli-missing", "--out", str(tmp_path)
    )
    assert failed.returncode == 1 and "model_unavailable" in failed.stderr
    slow = inpaint(
        embedded,
        "submit",
        str(PHOTO),
        str(MASK),
        "--prompt",
        "-",
        "--model",
        TINY_SLUG,
        "--param",
        "num_inference_steps=50",
        "--param",
        "img_width=64",
        "--param",
        "img_height=64",
        "--timeout",
        "0.2",
        "--poll",
        "--interval",
        "0.05",
    )
    assert slow.returncode == 3 and "keeps running" in slow.stderr
    request_id = slow.stderr.split("inpaint status ")[-1].strip()
    assert inpaint(embedded, "cancel", request_id).returncode in (0, 1)
    bad_param = inpaint(embedded, "submit", str(PHOTO), str(MASK), "--prompt", "-", "--param", "novalue")
    assert bad_param.returncode == 2
    assert not list(tmp_path.glob("*.png"))
