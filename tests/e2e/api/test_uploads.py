"""Multipart submits and upload_image through the real processes: the jobs complete on a worker."""

from __future__ import annotations

import httpx

from tests.support.images import box_mask, decode, png_bytes, scene
from tests.support.stack import Stack


def parts(image: bytes, mask: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("in.png", image, "image/png"), "mask": ("mask.png", mask, "image/png")}


def test_multipart_submits_on_v2_and_v1_complete(embedded: Stack) -> None:
    image, mask = png_bytes(scene()), png_bytes(box_mask())
    with embedded.client() as client:
        response = client.post("/v2/erase", data={"prompt": "x", "seed": "7"}, files=parts(image, mask))
        assert response.status_code == 200, response.text
        status = embedded.wait(response.json()["request_id"])
        assert status["status"] == "COMPLETED", status
        synchronous = client.post("/v1/erase", data={"prompt": "x"}, files=parts(image, mask))
    assert synchronous.status_code == 200, synchronous.text
    assert synchronous.headers["content-type"] == "image/png"
    assert decode(synchronous.content).size == (64, 64)


def test_an_uploaded_image_is_submitted_by_its_link(embedded: Stack) -> None:
    with embedded.client() as client:
        uploaded = client.post(
            "/api/v1/enterprise/upload_image", files={"image": ("in.png", png_bytes(scene()), "image/png")}
        )
        assert uploaded.status_code == 200, uploaded.text
        link = uploaded.json()["link"]
        assert httpx.get(link).content == png_bytes(scene())
        response = client.post(
            "/v2/erase",
            files={"mask": ("m.png", png_bytes(box_mask()), "image/png")},
            data={"prompt": "x", "image": link},
        )
        assert response.status_code == 200, response.text
    status = embedded.wait(response.json()["request_id"])
    assert status["status"] == "COMPLETED", status
