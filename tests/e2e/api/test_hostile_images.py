"""The hostile-image corpus (tests/support/hostile_images.py) through the real API, as `image` and
as `mask`. The API checks each file from its header and stores it as sent; the worker decodes it.
So each file is refused at submit with a 400 naming the field (its header is bad); or accepted, and
its job ends COMPLETED with a clean PNG result (metadata and payloads gone); or, where only the
pixel data is broken (truncated, corrupt), FAILED with `invalid_input` naming the field. The API
process stays up, and its memory stays bounded (read from /proc)."""

from __future__ import annotations

import base64
import io
import struct
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

from storage.blobs.images import inspect_image
from storage.blobs.store import make_blob_store
from storage.errors import InvalidInput, JobFailure
from tests.support.db import job_row, stack_settings
from tests.support.hostile_images import Sample, build_corpus
from tests.support.images import b64, scene
from tests.support.stack import Stack
from worker.jobs.inputs import decode_inputs

MiB = 1024 * 1024
# What one accepted 64x64 input costs is noise next to this; decoding just the 8000x8000 sample
# that the header check refuses would take 64 MiB (L) and 192 MiB more as RGB.
PEAK_GROWTH_LIMIT = 150 * MiB
LASTING_GROWTH_LIMIT = 64 * MiB


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since the last reset), in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: set VmHWM back to the current RSS


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "the stored input is not a PNG"
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kinds.append(data[at + 4 : at + 8])
        at += 12 + length
    return kinds


def submit(stack: Stack, field: str, sample: Sample) -> httpx.Response:
    black = Image.new("L", (64, 64), 0)  # keep everything: the erase job has nothing to do
    body = {
        "prompt": "x",
        "image": b64(scene()),
        "mask": b64(black),
        field: "data:image/png;base64," + base64.b64encode(sample.data).decode(),
    }
    with stack.client() as client:
        return client.post("/v2/erase", json=body)


def check_job(stack: Stack, job_id: str, field: str, sample: Sample, status: dict[str, object]) -> str:
    """The job's outcome for the report, once checked: inputs stored as sent; a clean PNG result, or a
    FAILED job naming the field when the file's pixels cannot be decoded."""
    settings = stack_settings(stack)
    blobs = make_blob_store(settings)
    row = job_row(stack, job_id)
    assert blobs.get(row.input_keys[field]) == sample.data, f"{sample.name}: not stored as sent"
    try:
        inspect_image(field, sample.data, max_pixels=settings.max_image_pixels)
        decode_inputs(sample.data, None, max_pixels=settings.max_image_pixels)
    except (InvalidInput, JobFailure):
        assert status["status"] == "FAILED", (sample.name, field, status)
        assert status["error_code"] == "invalid_input", (sample.name, status)
        assert str(status["error"]).startswith(f"{field}: "), (sample.name, status)
        return f"200, job FAILED: {str(status['error']).split(': ', 1)[1]}"
    assert status["status"] == "COMPLETED", (sample.name, field, status)
    result = blobs.get((row.output_keys or [])[0])
    assert set(png_chunks(result)) <= {b"IHDR", b"IDAT", b"IEND"}, f"{sample.name}: metadata reached the result"
    if sample.payload:
        assert sample.payload not in result, f"{sample.name}: the payload reached the result"
    if field == "image":
        expected = sample.size or Image.open(io.BytesIO(sample.data)).size
        assert Image.open(io.BytesIO(result)).size == expected, (sample.name, field)
    return "200, job COMPLETED"


def header_refuses(field: str, sample: Sample, max_pixels: int) -> bool:
    try:
        inspect_image(field, sample.data, max_pixels=max_pixels)
    except InvalidInput:
        return True
    return False


def test_hostile_image_corpus(embedded: Stack) -> None:
    pid = embedded.procs["api"].pid
    corpus = build_corpus()
    reset_peak(pid)
    before = memory(pid)
    outcomes: Counter[str] = Counter()
    jobs: list[tuple[str, str, Sample]] = []
    for sample in corpus:
        for field in ("image", "mask"):
            response = submit(embedded, field, sample)
            if header_refuses(field, sample, stack_settings(embedded).max_image_pixels):
                assert response.status_code == 400, (sample.name, field, response.text)
                message = response.json()["error"]
                assert message.startswith(f"{field}: "), (sample.name, message)
                outcomes[f"400 {message.split(': ', 1)[1]}"] += 1
            else:
                assert response.status_code == 200, (sample.name, field, response.text)
                jobs.append((response.json()["request_id"], field, sample))
            assert embedded.procs["api"].poll() is None, f"the API process died on {sample.name}"
    after = memory(pid)
    for job_id, field, sample in jobs:
        outcomes[check_job(embedded, job_id, field, sample, embedded.wait(job_id))] += 1
    print(
        f"\nhostile images: {len(corpus)} files x 2 fields; RSS {before['VmRSS'] // MiB} -> "
        f"{after['VmRSS'] // MiB} MiB, peak {after['VmHWM'] // MiB} MiB"
    )
    for outcome, count in sorted(outcomes.items()):
        print(f"  {count:3d}  {outcome}")
    assert after["VmHWM"] - before["VmRSS"] < PEAK_GROWTH_LIMIT, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < LASTING_GROWTH_LIMIT, (before, after)
    assert httpx.get(f"{embedded.base_url}/healthz").status_code == 200
