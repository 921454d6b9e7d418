"""The Stable Diffusion API enterprise upload_image, in process: an upload is checked like any input,
its link serves the image, and a submit reads it from storage (never over the network) for the key
that uploaded it alone; another key's, an expired and a forged link are refused."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

import api.submit
from storage.blobs.store import input_key
from storage.blobs.uploads import NOT_YOURS, parse_upload_link, upload_link
from storage.database.jobs import utcnow
from tests.support.app import in_process_app
from tests.support.images import box_mask, data_uri, png_bytes, scene

UPLOAD = "/api/v1/enterprise/upload_image"
PUBLIC_URL = "http://127.0.0.1:9"
"""Links name a loopback address, which the fetch policy refuses: a link that were fetched would fail."""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str]]]:
    fetched: list[str] = []

    def no_fetch(url: str, policy: Any) -> Any:
        fetched.append(url)
        raise AssertionError(f"an upload link was fetched over the network: {url}")

    monkeypatch.setattr(api.submit, "fetch", no_fetch)
    client, keys = in_process_app(tmp_path, public_url=PUBLIC_URL, allow_loopback_urls=False)
    with client:
        yield client, keys
    assert fetched == []


def context_of(client: TestClient) -> Any:
    return client.app.state.context  # type: ignore[attr-defined]


def upload(client: TestClient, key: str, data: bytes, *, multipart: bool = False) -> dict[str, Any]:
    if multipart:
        response = client.post(UPLOAD, headers={"x-api-key": key}, files={"image": ("a.png", data, "image/png")})
    else:
        response = client.post(UPLOAD, json={"key": key, "image": base64.b64encode(data).decode()})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def submit(client: TestClient, key: str, image: str, mask: str) -> Any:
    return client.post("/v2/erase", headers={"x-api-key": key}, json={"prompt": "x", "image": image, "mask": mask})


def test_an_upload_link_is_submitted_without_a_fetch(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    image, mask = png_bytes(scene()), png_bytes(box_mask())
    answer = upload(client, keys["user"], image)
    assert answer["status"] == "success" and answer["link"].startswith(f"{PUBLIC_URL}/uploads/")
    assert (answer["format"], answer["width"], answer["height"], answer["expires_in"]) == ("PNG", 64, 64, 3600)
    mask_link = upload(client, keys["user"], mask, multipart=True)["link"]
    served = client.get(answer["link"].removeprefix(PUBLIC_URL))
    assert served.status_code == 200 and served.content == image and served.headers["content-type"] == "image/png"

    response = submit(client, keys["user"], answer["link"], mask_link)
    assert response.status_code == 200, response.text
    job_id = response.json()["request_id"]
    assert context_of(client).blobs.get(input_key(job_id, "image")) == image
    assert context_of(client).blobs.get(input_key(job_id, "mask")) == mask


def test_the_modelslab_fields_take_an_upload_link(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    link = upload(client, keys["user"], png_bytes(scene()))["link"]
    body = {
        "key": keys["user"],
        "model_id": "erase",
        "prompt": "x",
        "init_image": link,
        "mask_image": data_uri(box_mask()),
    }
    response = client.post("/api/v6/image_editing/inpaint", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("processing", "success"), response.json()


def test_another_key_gets_the_answer_a_forged_link_gets(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    link = upload(client, keys["user"], png_bytes(scene()))["link"]
    mask = data_uri(box_mask())
    parts = urlsplit(link)
    query = parse_qs(parts.query)
    forged = link.replace(query["signature"][0], "0" * 64)
    stretched = link.replace(f"expires={query['expires'][0]}", f"expires={int(query['expires'][0]) + 3600}")
    unknown = link.replace(parts.path.rsplit("/", 1)[1], "A" * 24)
    answers = {
        "other key": submit(client, keys["admin"], link, mask),
        "forged signature": submit(client, keys["user"], forged, mask),
        "stretched expiry": submit(client, keys["user"], stretched, mask),
        "unknown upload": submit(client, keys["user"], unknown, mask),
    }
    for name, response in answers.items():
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"] == f"image: {NOT_YOURS}", (name, response.json())


def test_an_expired_link_is_refused_naming_the_expiry(app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app
    link = parse_upload_link(upload(client, keys["user"], png_bytes(scene()))["link"])
    assert link is not None
    past = utcnow().replace(microsecond=0) - timedelta(seconds=5)
    expired = upload_link(
        PUBLIC_URL, link.owner, link.token, expires_at=past, signing_key=context_of(client).settings.signing_key
    )
    response = submit(client, keys["user"], expired, data_uri(box_mask()))
    assert response.status_code == 400, response.text
    assert f"expired at {past.isoformat()}" in response.json()["error"], response.json()
    assert client.get(expired.removeprefix(PUBLIC_URL)).status_code == 404


def test_an_upload_is_checked_like_any_input(tmp_path: Path) -> None:
    client, keys = in_process_app(tmp_path, max_image_bytes=1024)
    with client:
        cases = {
            "not an image": ({"image": base64.b64encode(b"hello").decode()}, "could not be decoded"),
            "too large": ({"image": base64.b64encode(png_bytes(scene((256, 256)), "JPEG")).decode()}, "limit of 1024"),
            "a URL": ({"image": "https://example.com/a.png"}, "not a URL"),
            "no image": ({}, "image: is required"),
        }
        for name, (body, words) in cases.items():
            response = client.post(UPLOAD, headers={"x-api-key": keys["user"]}, json=body)
            assert response.status_code == 400, (name, response.text)
            assert words in response.json()["error"], (name, response.json())
        assert client.post(UPLOAD, json={"image": "aGk="}).status_code == 401
