"""A one-line progress bar for the CLI, with no dependency.

On a terminal the line is redrawn in place with a carriage return; on a pipe or a file
each new state is written once, as its own line, so logs stay readable.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

BAR_WIDTH = 28


def render(fraction: float | None, label: str, width: int = BAR_WIDTH) -> str:
    """`[#######.............]  35% label`; without a fraction, only the label."""
    if fraction is None:
        return label
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% {label}"


def describe_job(status: dict[str, Any]) -> tuple[float | None, str]:
    """A status body or event data as (fraction done, label): queue position, then steps."""
    state = status.get("status")
    if state == "QUEUED":
        ahead = status.get("queue_position")
        return 0.0, "queued" + ("" if ahead is None else (", next" if ahead == 0 else f", {ahead} ahead"))
    if state == "PROCESSING":
        progress = status.get("progress") or {}
        step, total = int(progress.get("step", 0)), int(progress.get("total", 0))
        return (step / total, f"step {step}/{total}") if total else (0.0, "processing")
    if state == "COMPLETED":
        return 1.0, "completed"
    return None, f"{str(state).lower()}: {status.get('error') or ''}".rstrip(": ")


def describe_batches(summaries: list[dict[str, Any]]) -> tuple[float, str]:
    """Batch summaries (GET /v2/batch/{id}) as one aggregate (fraction ended, counts by state)."""
    counts: Counter[str] = Counter()
    for summary in summaries:
        counts.update(summary.get("counts", {}))
    total = sum(counts.values())
    ended = total - counts["QUEUED"] - counts["PROCESSING"]
    shown = ", ".join(
        f"{counts[s]} {s.lower()}"
        for s in ("COMPLETED", "FAILED", "REJECTED", "PROCESSING", "QUEUED", "EXPIRED")
        if counts[s]
    )
    return (ended / total if total else 1.0), f"{ended}/{total} done ({shown})"


class ProgressBar:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._shown = ""

    def show(self, fraction: float | None, label: str) -> None:
        line = render(fraction, label)
        if line == self._shown:
            return
        if self.live:
            self.stream.write("\r" + line.ljust(len(self._shown)))
        else:
            self.stream.write(line + "\n")
        self._shown = line
        self.stream.flush()

    def close(self) -> None:
        """End the live line, so later messages start on their own."""
        if self.live and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = ""
