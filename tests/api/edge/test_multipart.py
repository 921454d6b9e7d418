"""Multipart submits on POST /v2/{model} and /v1/{model}, in process: files for image and mask, the
other fields as text, a 413 naming the file past INPAINT_MAX_IMAGE_BYTES, a 400 for a malformed
form; other routes still take JSON only. Through the real processes: tests/e2e/api/test_uploads.py."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from storage.blobs.store import input_key
from storage.database.engine import session_scope
from storage.database.jobs import get_job
from storage.database.models import Job
from tests.support.app import in_process_app
from tests.support.images import box_mask, png_bytes, scene

MAX_IMAGE_BYTES = 8192


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    client, keys = in_process_app(tmp_path, max_image_bytes=MAX_IMAGE_BYTES, sync_wait_seconds=0.1)
    with client:
        yield client, keys


def noise_png(size: int) -> bytes:
    """A PNG that does not compress: its bytes grow with its pixels."""
    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def files(image: bytes, mask: bytes | None = None) -> dict[str, tuple[str, bytes, str]]:
    parts = {"image": ("in.png", image, "image/png")}
    if mask is not None:
        parts["mask"] = ("mask.png", mask, "image/png")
    return parts


def context_of(client: TestClient) -> Any:
    return client.app.state.context  # type: ignore[attr-defined]


def count_jobs(client: TestClient) -> int:
    with session_scope(context_of(client).sessions) as session:
        return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


def test_a_multipart_v2_submit_stores_the_files_and_coerces_the_fields(
    app: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = app
    image, mask = png_bytes(scene()), png_bytes(box_mask())
    fields = {"prompt": "a red apple", "samples": "2", "seed": "1234", "base64": "true", "mask_blur": "4"}
    response = client.post("/v2/erase", headers={"x-api-key": keys["user"]}, data=fields, files=files(image, mask))
    assert response.status_code == 200, response.text
    job_id = response.json()["request_id"]
    context = context_of(client)
    assert context.blobs.get(input_key(job_id, "image")) == image
    assert context.blobs.get(input_key(job_id, "mask")) == mask
    with session_scope(context.sessions) as session:
        job = get_job(session, job_id)
        assert job is not None
        assert (job.params["samples"], job.params["seed"], job.params["mask"]["blur"]) == (2, 1234, 4)
        assert job.base64_output is True


def test_a_multipart_v1_submit_is_accepted_like_json(app: tuple[TestClient, dict[str, str]]) -> None:
    """No worker runs here: the v1 answer is the 504 that names the queued job."""
    client, keys = app
    image = png_bytes(scene())
    response = client.post(
        "/v1/erase",
        headers={"x-api-key": keys["user"]},
        data={"prompt": "a red apple"},
        files=files(image, png_bytes(box_mask())),
    )
    assert response.status_code == 504, response.text
    job_id = response.json()["request_id"]
    assert context_of(client).blobs.get(input_key(job_id, "image")) == image


def test_a_text_field_may_carry_the_image_as_base64(app: tuple[TestClient, dict[str, str]]) -> None:
    import base64

    client, keys = app
    fields = {"prompt": "x", "image": base64.b64encode(png_bytes(scene())).decode()}
    response = client.post(
        "/v2/erase", headers={"x-api-key": keys["user"]}, data=fields, files={"mask": ("m.png", png_bytes(box_mask()))}
    )
    assert response.status_code == 200, response.text


def test_a_file_over_the_image_limit_is_a_413_naming_it(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    big = noise_png(64)
    assert len(big) > MAX_IMAGE_BYTES
    before = count_jobs(client)
    for route in ("/v2/erase", "/v1/erase"):
        response = client.post(
            route, headers={"x-api-key": keys["user"]}, data={"prompt": "x"}, files=files(png_bytes(scene()), big)
        )
        assert response.status_code == 413, response.text
        assert response.headers["connection"] == "close"
        answer = response.json()
        assert (
            answer["error"]
            == f"mask: the file (INPAINT_MAX_IMAGE_BYTES) is more than the limit of {MAX_IMAGE_BYTES} bytes"
        )
        assert answer["errors"][0]["field"] == "mask" and answer["errors"][0]["limit"] == MAX_IMAGE_BYTES
    assert count_jobs(client) == before


def test_a_text_field_over_its_limit_is_a_413_naming_it(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    response = client.post(
        "/v2/erase",
        headers={"x-api-key": keys["user"]},
        data={"prompt": "x" * 20_000},
        files=files(png_bytes(scene())),
    )
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["field"] == "prompt"


MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("no boundary", b"anything", "multipart/form-data", "Missing boundary"),
    ("not multipart", b"garbage\r\n--zz\r\nfoo", "multipart/form-data; boundary=zz", "Invalid multipart data"),
    (
        "no name",
        b'--zz\r\nContent-Disposition: form-data; filename="a.png"\r\n\r\nxx\r\n--zz--\r\n',
        "multipart/form-data; boundary=zz",
        '"name" must be provided',
    ),
    (
        "a third file",
        b"".join(
            f'--zz\r\nContent-Disposition: form-data; name="f{i}"; filename="a"\r\n\r\nxx\r\n'.encode()
            for i in range(3)
        )
        + b"--zz--\r\n",
        "multipart/form-data; boundary=zz",
        "Too many files",
    ),
    (
        "a file that is not an image field",
        b'--zz\r\nContent-Disposition: form-data; name="prompt"; filename="p.txt"\r\n\r\nhi\r\n--zz--\r\n',
        "multipart/form-data; boundary=zz",
        "prompt: is a file; only image and mask may be sent as files",
    ),
    (
        "an empty file",
        b'--zz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\r\n--zz--\r\n',
        "multipart/form-data; boundary=zz",
        "image: is an empty file",
    ),
    (
        "a NUL in a field",
        b'--zz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na\x00b\r\n--zz--\r\n',
        "multipart/form-data; boundary=zz",
        "NUL",
    ),
]


@pytest.mark.parametrize(("name", "raw", "content_type", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_form_is_a_400_naming_the_problem(
    app: tuple[TestClient, dict[str, str]], name: str, raw: bytes, content_type: str, words: str
) -> None:
    client, keys = app
    before = count_jobs(client)
    response = client.post("/v2/erase", headers={"x-api-key": keys["user"], "content-type": content_type}, content=raw)
    assert response.status_code == 400, (name, response.text)
    assert words in response.json()["error"], response.json()
    assert count_jobs(client) == before


@pytest.mark.parametrize("route", ["/v2/batch", "/api/v6/image_editing/inpaint", "/api/v1/enterprise/load_model"])
def test_other_routes_still_take_json_only(app: tuple[TestClient, dict[str, str]], route: str) -> None:
    client, keys = app
    response = client.post(
        route, headers={"x-api-key": keys["admin"]}, data={"prompt": "x"}, files=files(png_bytes(scene()))
    )
    assert response.status_code == 400, response.text
    assert "send JSON as application/json" in response.json()["error"]
