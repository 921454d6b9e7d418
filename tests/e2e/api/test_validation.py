"""Validation at the edge, over HTTP against the live embedded stack: a bad request is a 400 naming the
field, the limit and the value, and nothing is queued for it; images by URL, and their failures.

The per-field table runs in process: against the contract (tests/storage/contract/
test_request_validation.py, tests/storage/blobs/test_images.py) and through the app
(tests/api/test_submit_validation.py). Here, one case of each stage proves it end to end."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from storage.database.models import Job
from tests.support.db import stack_session
from tests.support.http_server import Reply
from tests.support.images import b64, box_mask, job_body, png_bytes, scene
from tests.support.stack import Stack
from tests.support.validation import CASES, Case, bad_body, ids


def count_jobs(stack: Stack) -> int:
    with stack_session(stack) as session:
        return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


def post(stack: Stack, model: str, body: dict) -> tuple[int, dict]:
    with stack.client() as client:
        response = client.post(f"/v2/{model}", json=body)
    return response.status_code, response.json()


# One case of each stage of the per-field table (tests/support/validation.py): the request class (body),
# the images (image) and the model's spec, here a model registered from the command line (resolve).
# Every case runs in process against the contract and the app (tests/api/test_submit_validation.py).
ONE_OF_EACH_STAGE = [
    next(case for case in CASES if case.id == name)
    for name in ("samples too many", "image not a picture", "width above the model's maximum")
]


@pytest.mark.parametrize("case", ONE_OF_EACH_STAGE, ids=ids(ONE_OF_EACH_STAGE))
def test_bad_field_is_400_naming_field_limit_and_value(embedded: Stack, case: Case) -> None:
    before = count_jobs(embedded)
    status, answer = post(embedded, case.model, bad_body(case))
    assert status == 400, answer
    message = answer["error"]
    assert message.startswith(case.field), message
    for word in case.words:
        assert word in message, f"{word!r} missing from {message!r}"
    assert any(e["field"] == case.field for e in answer["errors"]), answer
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
