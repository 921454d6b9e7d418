"""The playground, driven in a real headless Chromium against the live embedded stack.

The page paints masks with mouse events, submits, follows the job's events, and
shows results that are checked here pixel by pixel against the input. The
finished state is kept as test-artifacts/playground.png; with
INPAINT_UPDATE_SCREENSHOT=1 it is also written, quantized, to docs/playground.png
(the README's picture).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import TINY_SLUG
from tests.support.browser import (
    CHROMIUM_ARGS,
    DROP_FILE,
    RECORD_JOB_PANEL,
    VIEWPORT,
    Canvas,
    chromium_path,
    missing_browser,
)
from tests.support.http_server import Reply
from tests.support.images import box_mask, job_body, png_bytes, scene
from tests.support.stack import Stack, _keys_of

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture skips, saying why
    expect = sync_playwright = None

ROOT = Path(__file__).resolve().parents[3]
PHOTO = ROOT / "docs" / "examples" / "photo.png"
ARTIFACTS = ROOT / "test-artifacts"
SLOW = 240_000  # ms: a loaded machine runs several stacks at once


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path()), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def key(embedded: Stack) -> str:
    """A key of the playground's own, so that its history holds only these tests' jobs."""
    return _keys_of(embedded.cli("inpaint-admin", "keys", "create", "--name", "playground"))[0]


@pytest.fixture
def page(browser: Any, embedded: Stack, key: str) -> Iterator[Any]:
    """The playground at 1280x800 with the key saved; fails the test on any script error."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{embedded.base_url}/playground")
    page.fill("#api-key", key)
    page.click("#save-key")
    expect(page.locator(f"#model option[value='{TINY_SLUG}']")).to_have_count(1)
    expect(page.locator("#scheduler option[value='DDIM']")).to_have_count(1)
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def expect_status(page: Any, status: str, timeout: int = SLOW) -> None:
    expect(page.locator("#job-status")).to_have_text(status, timeout=timeout)


def download(page: Any, index: int = 0) -> Image.Image:
    with page.expect_download() as info:
        page.click(f"#download-{index}")
    return Image.open(io.BytesIO(Path(info.value.path()).read_bytes())).convert("RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def distance_to(size: tuple[int, int], path: list[tuple[float, float]]) -> np.ndarray:
    """Distance from each pixel's centre to the polyline `path`, in image pixels."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]] + 0.5
    best = np.full((size[1], size[0]), np.inf)
    for (x0, y0), (x1, y1) in zip(path, path[1:], strict=False):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        best = np.minimum(best, np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy)))
    return best


def test_page_and_assets_need_no_key(embedded: Stack) -> None:
    with httpx.Client(base_url=embedded.base_url) as client:
        page = client.get("/playground")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="mask-canvas"' in page.text and "script-src 'self'" in page.headers["content-security-policy"]
        for name, kind in [("app.js", "text/javascript"), ("editor.js", "text/javascript"), ("style.css", "text/css")]:
            asset = client.get(f"/playground/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), name
        for name in ["nope.js", "..%2Fapp.py", "index.html.bak", "playground.py"]:
            assert client.get(f"/playground/{name}").status_code == 404, name
        assert client.get("/v2/models").status_code == 401, "the API itself still needs the key"


def test_paint_erase_download_and_compare(page: Any, embedded: Stack) -> None:
    """Paint over the post in the example photo (with an undone stroke and an eraser pass), erase it,
    download the result: every pixel the mask kept is the input's."""
    photo = Image.open(PHOTO).convert("RGB")
    page.set_input_files("#image-file", str(PHOTO))
    page.wait_for_selector("#editor:not([hidden])")
    canvas = Canvas(page, photo.size)
    page.fill("#brush-size", "30")
    radius = 30 / canvas.display_scale() / 2

    sun = [(30.0, 55.0), (100.0, 55.0)]
    canvas.stroke(sun)
    page.click("#undo")
    page.click("#redo")
    page.click("#undo")
    assert page.is_disabled("#undo") and page.is_enabled("#redo")
    post = [[(x, 96.0), (x, 200.0)] for x in (156.0, 168.0, 180.0, 192.0)]
    for path in post:
        canvas.stroke(path)
    page.click("label[for=tool-eraser]")
    assert page.is_checked("#tool-eraser")
    erased = [(140.0, 90.0), (210.0, 90.0)]  # the sky above the post: kept again
    canvas.stroke(erased)

    page.select_option("#model", "erase")
    page.click("#submit")
    expect_status(page, "COMPLETED")
    result = download(page)
    assert result.size == photo.size

    painted = np.min([distance_to(photo.size, path) for path in post], axis=0)
    from_eraser = distance_to(photo.size, erased)
    margin = 1.5 + 1 / canvas.display_scale()
    kept = (painted > radius + margin) | (from_eraser < radius - margin)
    repainted = (painted < radius - margin) & (from_eraser > radius + margin)
    before, after = pixels(photo), pixels(result)
    assert kept.sum() > 50_000 and repainted.sum() > 2_000
    assert np.array_equal(after[kept], before[kept]), "a pixel the mask keeps changed"
    on_post = repainted & (np.abs(before - before[150, 175]).sum(axis=2) < 30)
    assert on_post.sum() > 1_000 and np.abs(after[on_post] - before[on_post]).sum(axis=1).min() > 60, (
        "the post was not erased"
    )

    text = page.inner_text("#results")
    assert "seed" in text and "inference" in text and "done in" in text
    page.fill("#compare-slider", "30")
    assert "30%" in page.get_attribute("#compare-after", "style")
    assert page.locator("#history .history-item").count() >= 1
    keep_screenshot(page)


def keep_screenshot(page: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"))
    if os.environ.get("INPAINT_UPDATE_SCREENSHOT") == "1":
        shot = Image.open(ARTIFACTS / "playground.png").convert("RGB").quantize(colors=128)
        shot.save(ROOT / "docs" / "playground.png", optimize=True)


def test_url_image_uploaded_mask_invert_iterate_and_history(
    page: Any, embedded: Stack, http_server: Any, tmp_path: Path
) -> None:
    """An image by URL, a mask file (inverted in the page), erase; then the result as the next
    input, and the job reopened from the history. The event stream is refused here, so the page
    follows the job by polling its status instead."""
    refused: list[str] = []
    page.route("**/v2/requests/*/events", lambda route: (refused.append(route.request.url), route.abort()))
    polled: list[str] = []
    page.on("request", lambda request: "/status" in request.url and polled.append(request.url))

    size = (128, 96)
    image, mask = scene(size), box_mask(size)
    http_server.routes["/scene.png"] = Reply(200, png_bytes(image), {"content-type": "image/png"})
    (tmp_path / "inverted.png").write_bytes(png_bytes(ImageOps.invert(mask)))
    page.fill("#image-url", f"{http_server.url}/scene.png")
    page.click("#load-url")
    expect(page.locator("#input-size")).to_have_text("128×96")
    page.set_input_files("#mask-file", str(tmp_path / "inverted.png"))
    page.click("#invert-mask")
    page.select_option("#model", "erase")
    page.click("#submit")
    expect_status(page, "COMPLETED")
    request_id = page.inner_text("#job-id")
    assert refused and polled, "the page did not fall back to polling"
    result = download(page)

    keep, before, after = np.asarray(mask) == 0, pixels(image), pixels(result)
    assert np.array_equal(after[keep], before[keep]), "a pixel outside the mask changed"
    assert not np.array_equal(after[~keep], before[~keep]), "nothing inside the mask changed"

    page.click("#use-as-input-0")
    expect(page.locator("#input-image")).to_have_attribute("src", page.get_attribute("#download-0", "href"))
    page.click("#submit")
    expect(page.locator("#mask-error")).to_contain_text("Paint over the area")

    page.reload()
    item = page.locator(f"#history .history-item[data-request-id='{request_id}']")
    expect(item.locator(".badge")).to_have_text("COMPLETED")
    item.click()
    expect_status(page, "COMPLETED")
    again = base64.b64decode(page.get_attribute("#download-0", "href").split(",", 1)[1])
    assert np.array_equal(pixels(Image.open(io.BytesIO(again))), after)


def test_dropped_image_shows_progress_then_result(page: Any, embedded: Stack) -> None:
    """The tiny diffusers pipeline: queue, step progress from the live stream, then the result and its seed."""
    image = scene((64, 64))
    page.evaluate(DROP_FILE, [base64.b64encode(png_bytes(image)).decode(), "scene.png", "image/png"])
    page.wait_for_selector("#editor:not([hidden])")
    Canvas(page, image.size).stroke([(16.0, 32.0), (48.0, 32.0)])
    page.select_option("#model", TINY_SLUG)
    page.fill("#prompt", "a red apple")
    page.fill("#steps", "12")
    page.fill("#seed", "1234")
    page.evaluate(RECORD_JOB_PANEL)
    page.click("#submit")
    expect_status(page, "COMPLETED")
    seen = page.evaluate("window.seenStates")
    steps = [s["message"] for s in seen if s["status"] == "PROCESSING" and "step" in s["message"]]
    assert steps and all(m.endswith("/ 12") for m in steps), seen
    assert page.evaluate("document.getElementById('progress-bar').value") == 100
    assert "seed 1234" in page.inner_text("#results")


def test_queue_position_then_cancel_while_running(page: Any, embedded: Stack, key: str) -> None:
    """While another job runs, the page's job shows its place in the queue; once it runs, Cancel stops it.
    Both jobs are heavy for the tiny pipeline (4 samples, 50 steps), so neither ends on its own first."""
    blocker = embedded.submit(TINY_SLUG, job_body((128, 128), num_inference_steps=50, samples=4), key=key)
    embedded.wait(blocker, until={"PROCESSING", "COMPLETED", "FAILED"}, key=key)
    image = scene((128, 128))
    page.evaluate(DROP_FILE, [base64.b64encode(png_bytes(image)).decode(), "scene.png", "image/png"])
    page.wait_for_selector("#editor:not([hidden])")
    page.click("#invert-mask")  # repaint everything
    page.select_option("#model", TINY_SLUG)
    page.fill("#prompt", "a red apple")
    page.fill("#steps", "50")
    page.fill("#samples", "4")
    page.click("#submit")
    expect(page.locator("#job-message")).to_have_text("next in the queue", timeout=SLOW)
    with embedded.client(key) as client:
        assert client.post(f"/v2/requests/{blocker}/cancel").json()["cancelled"] is True
    expect(page.locator("#job-message")).to_contain_text("step", timeout=SLOW)
    page.click("#cancel")
    expect_status(page, "FAILED")
    expect(page.locator("#job-message")).to_have_text("cancelled")
    with embedded.client(key) as client:
        status = client.get(f"/v2/requests/{page.inner_text('#job-id')}/status").json()
    assert status["status"] == "FAILED" and status["error_code"] == "cancelled"


def test_errors_are_shown_next_to_their_fields(page: Any, embedded: Stack) -> None:
    page.click("#submit")
    expect(page.locator("#image-error")).to_contain_text("Load an image first")
    page.set_input_files("#image-file", str(PHOTO))
    page.wait_for_selector("#editor:not([hidden])")
    Canvas(page, (256, 256)).stroke([(100.0, 100.0), (140.0, 140.0)])
    page.click("#clear-mask")
    page.click("#submit")
    expect(page.locator("#mask-error")).to_contain_text("Paint over the area")
    page.click("#invert-mask")

    page.select_option("#model", TINY_SLUG)
    page.fill("#prompt", "a red apple")
    page.fill("#steps", "500")
    page.click("#submit")
    expect(page.locator("#steps-error")).to_contain_text("must be between 1 and 50 for this model, got 500")
    expect(page.locator("#steps")).to_have_attribute("aria-invalid", "true")
    assert page.inner_text("#form-error") == ""

    page.fill("#steps", "2")
    page.click("#advanced summary")
    page.fill("#width", "100")
    page.click("#submit")
    expect(page.locator("#width-error")).to_contain_text("must be a multiple of 8 from 8 to 128")
    assert page.inner_text("#steps-error") == "", "the old error stayed"

    page.fill("#api-key", "iq_not-a-key")
    page.click("#save-key")
    expect(page.locator("#api-key-error")).to_contain_text("refused")
