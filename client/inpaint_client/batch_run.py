"""`inpaint batch FILE.jsonl`: many jobs through POST /v2/batch, in chunks of 100, one progress bar.

Each non-blank line of the file is one job body with its `model` (lines starting with # are
skipped). `image`/`mask` paths are read relative to the file's folder. Images of line N are
saved as `{N:04d}-{i}.png` in the output folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inpaint_client._http import MAX_BATCH_ITEMS
from inpaint_client.client import Client
from inpaint_client.errors import InferenceTimeout
from inpaint_client.handles import Batch
from inpaint_client.models import IMAGE_FIELDS, is_url
from inpaint_client.progress import ProgressBar, describe_batches


class UsageError(Exception):
    """The input file cannot be used as given."""


@dataclass
class BatchOutcome:
    completed: int = 0
    failed: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)

    @property
    def all_completed(self) -> bool:
        return not self.failed and not self.rejected


def read_jobs(path: Path, *, model: str | None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, body) of every job line; UsageError naming the line if one is not a JSON object."""
    jobs = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object, got {type(body).__name__}")
        if model and "model" not in body:
            body["model"] = model
        for name in IMAGE_FIELDS:
            value = body.get(name)
            if isinstance(value, str) and not is_url(value) and (path.parent / value).is_file():
                body[name] = str(path.parent / value)
        jobs.append((number, body))
    if not jobs:
        raise UsageError(f"{path}: no jobs in the file")
    return jobs


def wait_for_batches(batches: list[Batch], *, timeout: float, interval: float, bar: ProgressBar) -> list[dict]:
    """Poll each unfinished batch until all are done; their last summaries, in order."""
    deadline = time.monotonic() + timeout
    summaries: list[dict[str, Any]] = [{} for _ in batches]
    while True:
        for i, batch in enumerate(batches):
            if not summaries[i].get("done"):
                summaries[i] = batch.status()
        bar.show(*describe_batches(summaries))
        pending = [b.batch_id for b, s in zip(batches, summaries, strict=True) if not s["done"]]
        if not pending:
            return summaries
        if time.monotonic() >= deadline:
            raise InferenceTimeout(pending[0], timeout)
        time.sleep(interval)


def run_batch(
    client: Client,
    path: Path,
    *,
    model: str | None,
    out: str,
    timeout: float,
    interval: float,
    emit: Callable[[str], None],
    say: Callable[[str], None],
) -> BatchOutcome:
    jobs = read_jobs(path, model=model)
    chunks = [jobs[i : i + MAX_BATCH_ITEMS] for i in range(0, len(jobs), MAX_BATCH_ITEMS)]
    batches = [client.submit_batch([body for _, body in chunk]) for chunk in chunks]
    outcome = BatchOutcome()
    for chunk, batch in zip(chunks, batches, strict=True):
        for (line, _), item in zip(chunk, batch.items, strict=True):
            if not item.get("request_id"):
                outcome.rejected.append(line)
                say(f"line {line}: rejected (HTTP {item.get('http_status')}): {item.get('error')}")
    say(
        f"submitted {len(jobs)} jobs in {len(batches)} batch(es): "
        f"{len(jobs) - len(outcome.rejected)} accepted, {len(outcome.rejected)} rejected"
    )
    bar = ProgressBar()
    try:
        summaries = wait_for_batches(batches, timeout=timeout, interval=interval, bar=bar)
    finally:
        bar.close()
    for chunk, summary in zip(chunks, summaries, strict=True):
        for (line, _), item in zip(chunk, summary["items"], strict=True):
            save_item(client, line, item, out=out, outcome=outcome, emit=emit, say=say)
    say(f"{outcome.completed} completed, {len(outcome.failed)} failed, {len(outcome.rejected)} rejected")
    return outcome


def save_item(
    client: Client,
    line: int,
    item: dict[str, Any],
    *,
    out: str,
    outcome: BatchOutcome,
    emit: Callable[[str], None],
    say: Callable[[str], None],
) -> None:
    """Save a completed item's images; report a failed one."""
    if item["status"] == "COMPLETED":
        for saved in client.job(item["request_id"]).download(out, stem=f"{line:04d}"):
            emit(str(saved))
        outcome.completed += 1
    elif item["status"] != "REJECTED":
        status = client.status(item["request_id"])
        outcome.failed.append(line)
        say(f"line {line}: {item['request_id']} {status['status']} ({status.get('error_code')}): {status.get('error')}")
