"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium, driven by Playwright.

Playwright's own browser download is never used (this project reaches no network
but the package registries): ./scripts/test installs Debian's `chromium` when it
is missing. Where it cannot be installed, the browser tests are skipped with a
reason that starts with SKIP_MARK, and tests/conftest.py repeats it as a warning
in the terminal summary, so a run without them never looks like a full pass.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SKIP_MARK = "BROWSER TESTS SKIPPED"
VIEWPORT = {"width": 1280, "height": 800}

# Records every state the job panel shows, so that brief states (a progress step) are seen.
RECORD_JOB_PANEL = """() => {
  window.seenStates = [];
  const panel = document.getElementById("job-panel");
  const record = () => window.seenStates.push({
    status: document.getElementById("job-status").textContent,
    message: document.getElementById("job-message").textContent,
    progress: document.getElementById("progress-bar").value,
  });
  new MutationObserver(record).observe(panel, {subtree: true, childList: true, characterData: true,
                                               attributes: true});
}"""

DROP_FILE = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type}));
  document.getElementById("drop-zone").dispatchEvent(
    new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def chromium_path() -> Path:
    """Debian's Chromium; INPAINT_TEST_CHROMIUM names another build of it."""
    return Path(os.environ.get("INPAINT_TEST_CHROMIUM") or DEFAULT_CHROMIUM)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not chromium_path().exists():
        return (
            f"{SKIP_MARK}: {chromium_path()} is missing and could not be installed "
            "(./scripts/test installs Debian's chromium and chromium-driver)"
        )
    if importlib.util.find_spec("playwright") is None:
        return f"{SKIP_MARK}: the playwright package is missing (pip install -e '.[test]')"
    return None


@dataclass
class Canvas:
    """Maps image pixels to page coordinates on the mask canvas, for painting with the mouse."""

    page: Any
    image_size: tuple[int, int]

    def to_page(self, x: float, y: float) -> tuple[float, float]:
        box = self.page.locator("#mask-canvas").bounding_box()
        return box["x"] + x * box["width"] / self.image_size[0], box["y"] + y * box["height"] / self.image_size[1]

    def display_scale(self) -> float:
        return float(self.page.locator("#mask-canvas").bounding_box()["width"]) / self.image_size[0]

    def stroke(self, points: list[tuple[float, float]]) -> None:
        """Press at the first point, move through the others in small steps, release."""
        mouse = self.page.mouse
        mouse.move(*self.to_page(*points[0]))
        mouse.down()
        for point in points[1:]:
            mouse.move(*self.to_page(*point), steps=8)
        mouse.up()
