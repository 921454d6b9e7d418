"""A job's inputs read back and decoded (worker.jobs.inputs): the bytes as the API stored them (any
accepted format, a mask of any size, or no mask), and the PNGs older API versions stored. The
rig tests run them through the worker's real path on the tiny SD 1.5 pipeline."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from storage.blobs.images import encode_png, inspect_image
from storage.database.models import JobStatus
from storage.errors import JobFailure
from storage.settings import Settings
from tests.support.hostile_images import encode
from tests.support.images import box_mask, scene
from tests.support.rig import Rig, tiny_rig
from tests.support.waiting import wait_until
from worker.jobs.inputs import read_inputs
from worker.jobs.overlap import Prefetcher
from worker.jobs.runner import run_job

MAX_PIXELS = Settings.model_fields["max_image_pixels"].default
PHOTO = scene((64, 48))


def stored(**data: bytes) -> tuple[dict[str, str], Callable[[str], bytes]]:
    """Blob keys by role, and a `get` over those bytes."""
    blobs = {f"jobs/x/input/{role}": value for role, value in data.items()}
    return {role: f"jobs/x/input/{role}" for role in data}, blobs.__getitem__


def grey_ramp(size: tuple[int, int]) -> Image.Image:
    """A mask sent with grey values: left half dark (< 128), right half light."""
    w, h = size
    return Image.fromarray(np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1)), "L")


def test_a_jpeg_and_a_mask_of_another_size_decode_to_rgb_and_l_at_the_images_size() -> None:
    jpeg = encode(PHOTO, "JPEG", quality=90)
    keys, get = stored(image=jpeg, mask=encode(grey_ramp((32, 24)), "PNG"))
    image, mask = read_inputs(get, keys, max_pixels=MAX_PIXELS)
    assert (image.mode, image.size, mask.mode, mask.size) == ("RGB", (64, 48), "L", (64, 48))
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))
    values = np.asarray(mask)
    assert set(np.unique(values)) == {0, 255}, "the mask is not thresholded"
    assert (values[:, :30] == 0).all() and (values[:, 34:] == 255).all(), "the mask was not scaled up"


def test_a_job_without_a_mask_repaints_everything() -> None:
    keys, get = stored(image=encode(PHOTO, "WEBP", quality=80))
    image, mask = read_inputs(get, keys, max_pixels=MAX_PIXELS)
    assert (image.mode, image.size) == ("RGB", (64, 48))
    assert (mask.mode, mask.size, mask.getextrema()) == ("L", (64, 48), (255, 255))


def test_pngs_stored_by_an_older_api_read_back_unchanged() -> None:
    mask = box_mask((64, 48))
    keys, get = stored(image=encode_png(PHOTO), mask=encode_png(mask))
    image, read_mask = read_inputs(get, keys, max_pixels=MAX_PIXELS)
    assert np.array_equal(np.asarray(image), np.asarray(PHOTO))
    assert np.array_equal(np.asarray(read_mask), np.asarray(mask))


def test_an_image_with_alpha_is_flattened_onto_white() -> None:
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    keys, get = stored(image=encode(clear, "WEBP", lossless=True))
    image, _ = read_inputs(get, keys, max_pixels=MAX_PIXELS)
    assert image.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_pixels_that_pass_the_header_check_but_cannot_be_decoded_fail_naming_the_field() -> None:
    png = encode(PHOTO, "PNG")
    cut = png[: len(png) // 2]
    assert inspect_image("mask", cut, max_pixels=MAX_PIXELS).size == (64, 48), "the API would refuse it"
    for role in ("image", "mask"):
        keys, get = stored(**{"image": png, role: cut})
        with pytest.raises(JobFailure) as raised:
            read_inputs(get, keys, max_pixels=MAX_PIXELS)
        assert raised.value.code == "invalid_input"
        assert raised.value.message == f"{role}: could not be decoded as PNG, JPEG, WEBP"


def test_the_worker_decodes_under_its_own_pixel_limit() -> None:
    keys, get = stored(image=encode(PHOTO, "PNG"))
    with pytest.raises(JobFailure) as raised:
        read_inputs(get, keys, max_pixels=1000)
    assert raised.value.message == "image: has 64x48 = 3072 pixels, more than the limit of 1000"


@pytest.fixture
def rig(tmp_path, tiny_model_dir) -> Rig:
    with tiny_rig(tmp_path, tiny_model_dir, storage_retry_seconds=0) as rig:
        yield rig


BODY = {"prompt": "a red door", "seed": 5}


def test_jobs_stored_as_sent_run_to_completion(rig: Rig) -> None:
    jpeg = rig.submit(
        BODY, image=PHOTO, stored={"image": encode(PHOTO, "JPEG"), "mask": encode(grey_ramp((16, 12)), "PNG")}
    )
    unmasked = rig.submit(BODY, image=PHOTO, stored={"image": encode(PHOTO, "WEBP")})
    for job_id in (jpeg, unmasked):
        assert run_job(rig.ctx, job_id) == {job_id: "COMPLETED"}, rig.job(job_id).error_message
        (pixels,) = rig.pixels(job_id)
        assert pixels.shape == (48, 64, 3)


def test_an_input_that_cannot_be_decoded_fails_the_job_once(rig: Rig) -> None:
    png = encode(PHOTO, "PNG")
    broken = rig.submit(BODY, image=PHOTO, stored={"image": png[: len(png) // 2]})
    assert run_job(rig.ctx, broken) == {broken: "FAILED"}
    job = rig.job(broken)
    assert (job.status, job.error_code, job.attempts) == (JobStatus.FAILED.value, "invalid_input", 1)
    assert job.error_message == "image: could not be decoded as PNG, JPEG, WEBP"
    assert run_job(rig.ctx, broken) == {}, "a second delivery ran it again"


def test_the_read_ahead_skips_inputs_that_cannot_be_decoded(rig: Rig) -> None:
    png = encode(PHOTO, "PNG")
    broken = rig.submit(BODY, image=PHOTO, stored={"image": png[: len(png) // 2]})
    after = rig.submit(BODY, image=PHOTO, stored={"image": png})
    prefetcher = Prefetcher(rig.ctx.sessions, rig.ctx.blobs, capacity=2, max_pixels=MAX_PIXELS)
    prefetcher.ahead_of("inpaint")
    keys = rig.job(after).input_keys
    wait_until(lambda: prefetcher.take(after, keys) is not None, timeout=10, what="the next good job read ahead")
    assert prefetcher.take(broken, rig.job(broken).input_keys) is None
    assert run_job(rig.ctx, broken) == {broken: "FAILED"}, "the job's own run reports it"
