"""Validation at the edge: every bad request is a 400 naming the field, the limit and the value,
and nothing is queued for it."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from storage.database.models import Job
from tests.conftest import TINY_SLUG
from tests.support.db import stack_session
from tests.support.http_server import Reply
from tests.support.images import b64, box_mask, job_body, png_bytes, scene
from tests.support.stack import Stack

SD15 = "sd1.5-inpainting"


def count_jobs(stack: Stack) -> int:
    with stack_session(stack) as session:
        return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


def post(stack: Stack, model: str, body: dict) -> tuple[int, dict]:
    with stack.client() as client:
        response = client.post(f"/v2/{model}", json=body)
    return response.status_code, response.json()


# (case id, model, body overrides, field, words the message must contain)
CASES = [
    ("prompt missing", SD15, {"prompt": None}, "prompt", ["required"]),
    ("prompt empty", SD15, {"prompt": ""}, "prompt", ["empty"]),
    ("prompt too long", SD15, {"prompt": "x" * 4001}, "prompt", ["4000", "4001"]),
    ("mask missing", SD15, {"mask": None}, "mask", ["required"]),
    ("samples too many", SD15, {"samples": 5}, "samples", ["at most 4", "5"]),
    ("samples zero", SD15, {"samples": 0}, "samples", ["at least 1", "0"]),
    ("samples not a number", SD15, {"samples": "many"}, "samples", ["integer", "many"]),
    ("seed below -1", SD15, {"seed": -2}, "seed", ["at least -1", "-2"]),
    ("seed too large", SD15, {"seed": 10**15}, "seed", ["999999999999999", str(10**15)]),
    ("strength above 1", SD15, {"strength": 1.5}, "strength", ["at most 1", "1.5"]),
    ("strength below the model's minimum", SD15, {"strength": 0.05}, "strength", ["0.1", "0.05"]),
    ("guidance above the model's range", SD15, {"guidance_scale": 30}, "guidance_scale", ["25", "30"]),
    ("steps below the model's range", SD15, {"num_inference_steps": 10}, "num_inference_steps", ["20", "100", "10"]),
    ("steps above the model's range", SD15, {"num_inference_steps": 101}, "num_inference_steps", ["100", "101"]),
    ("steps above any schedule", SD15, {"num_inference_steps": 1000}, "num_inference_steps", ["500", "1000"]),
    (
        "steps beyond LCM's schedule",
        SD15,
        {"scheduler": "LCM", "num_inference_steps": 40, "strength": 0.5},
        "num_inference_steps",
        ["LCM", "at most 25", "strength 0.5", "40"],
    ),
    ("width not an allowed size", SD15, {"img_width": 600}, "img_width", ["512", "768", "600"]),
    ("height not a multiple of 8", TINY_SLUG, {"img_height": 60}, "img_height", ["multiple of 8", "60"]),
    ("width above the model's maximum", TINY_SLUG, {"img_width": 256}, "img_width", ["128", "256"]),
    ("unknown scheduler", SD15, {"scheduler": "Turbo"}, "scheduler", ["Turbo", "DDIM", "Euler a"]),
    ("scheduler that cannot inpaint", SD15, {"scheduler": "KarrasVeScheduler"}, "scheduler", ["not supported"]),
    ("unknown field", SD15, {"cfg": 7}, "cfg", ["not a field"]),
    ("image not base64", SD15, {"image": "not an image!"}, "image", ["URL", "base64"]),
    (
        "image not a picture",
        SD15,
        {"image": base64.b64encode(b"hello, world").decode()},
        "image",
        ["could not be decoded", "PNG"],
    ),
    (
        "mask truncated",
        SD15,
        {"mask": base64.b64encode(png_bytes(box_mask())[:60]).decode()},
        "mask",
        ["could not be decoded"],
    ),
    ("image in a format not allowed", SD15, {"image": b64(scene(), "BMP")}, "image", ["could not be decoded"]),
]


@pytest.mark.parametrize("case,model,overrides,field,words", CASES, ids=[c[0] for c in CASES])
def test_bad_field_is_400_naming_field_limit_and_value(
    embedded: Stack, case: str, model: str, overrides: dict, field: str, words: list[str]
) -> None:
    body = job_body()
    for name, value in overrides.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    before = count_jobs(embedded)
    status, answer = post(embedded, model, body)
    assert status == 400, answer
    message = answer["error"]
    assert message.startswith(field), message
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"
    assert any(e["field"] == field for e in answer["errors"]), answer
    assert count_jobs(embedded) == before, "a rejected request was queued"


def test_too_many_pixels_is_rejected_from_the_header(embedded: Stack) -> None:
    huge = Image.new("RGB", (4097, 4097), (0, 0, 0))  # solid colour: a small file, a big picture
    status, answer = post(embedded, "erase", job_body(image=b64(huge)))
    assert status == 400
    assert "4097x4097" in answer["error"] and "16777216" in answer["error"]


def test_invalid_json_is_400(embedded: Stack) -> None:
    with embedded.client() as client:
        response = client.post("/v2/erase", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_unknown_model_is_404(embedded: Stack) -> None:
    status, answer = post(embedded, "no-such-model", job_body())
    assert status == 404
    assert "no-such-model" in answer["error"]


def test_image_by_url(embedded: Stack, http_server) -> None:
    http_server.routes["/in.png"] = Reply(200, png_bytes(scene()), {"content-type": "image/png"})
    http_server.routes["/mask.jpg"] = Reply(200, png_bytes(box_mask().convert("RGB"), "JPEG"))
    job_id = embedded.submit("erase", job_body(image=f"{http_server.url}/in.png", mask=f"{http_server.url}/mask.jpg"))
    assert embedded.wait(job_id)["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "reply,words",
    [
        (Reply(404, b"gone"), ["HTTP 404"]),
        (Reply(302, b"", {"location": "http://example.com/x.png"}), ["HTTP 302"]),
        (Reply(200, b"<html>not an image</html>"), ["could not be decoded"]),
    ],
)
def test_image_url_failures_are_400(embedded: Stack, http_server, reply: Reply, words: list[str]) -> None:
    http_server.routes["/x.png"] = reply
    status, answer = post(embedded, "erase", job_body(image=f"{http_server.url}/x.png"))
    assert status == 400
    assert answer["error"].startswith("image")
    for word in words:
        assert word in answer["error"]


def test_mask_of_another_size_is_resized_to_the_image(embedded: Stack) -> None:
    small_mask = box_mask((32, 32))
    job_id = embedded.submit("erase", job_body(size=(64, 64), mask=b64(small_mask)))
    assert embedded.wait(job_id)["status"] == "COMPLETED"
    with embedded.client() as client:
        body = client.get(f"/v2/requests/{job_id}", params={"base64": "true"}).json()
    from tests.support.images import decode

    out = np.asarray(decode(base64.b64decode(body["output"][0])).convert("RGB"))
    keep = np.asarray(small_mask.resize((64, 64), Image.Resampling.NEAREST)) < 128
    assert np.array_equal(out[keep], np.asarray(scene())[keep])
