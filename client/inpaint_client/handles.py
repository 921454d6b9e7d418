"""Handles on a submitted job (Job) and a submitted batch (Batch), for the synchronous Client.

Each method is one call to the client with the handle's id; aio.py has the async twins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from inpaint_client._sse import Event
from inpaint_client.errors import InferenceTimeout

ProgressCallback = Callable[[dict[str, Any]], None]
"""Called with every status seen: `status`, plus `queue_position` (QUEUED) or `progress` (PROCESSING)."""


class Client(Protocol):
    """What a handle calls: the methods of inpaint_client.client.Client it forwards to."""

    def status(self, request_id: str) -> dict[str, Any]: ...

    def result(self, request_id: str, *, base64: bool | None = None) -> dict[str, Any]: ...

    def wait(
        self,
        request_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        stream: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]: ...

    def cancel(self, request_id: str) -> dict[str, Any]: ...

    def events(
        self, request_id: str, *, last_event_id: str | None = None, timeout: float | None = None, max_retries: int = 5
    ) -> Iterator[Event]: ...

    def download(self, result: dict[str, Any], directory: str | Path, *, stem: str | None = None) -> list[Path]: ...

    def batch_status(self, batch_id: str) -> dict[str, Any]: ...


@dataclass
class JobInfo:
    """What submit answered: the id, the status and result URLs, and whether it was an idempotent replay."""

    request_id: str
    status_url: str | None = None
    response_url: str | None = None
    replayed: bool = False

    @staticmethod
    def fields_of(answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "request_id": str(answer["request_id"]),
            "status_url": answer.get("status_url"),
            "response_url": answer.get("response_url"),
            "replayed": bool(answer.get("idempotent_replay")),
        }


@dataclass
class Job(JobInfo):
    client: Client = field(repr=False, kw_only=True)

    @classmethod
    def from_answer(cls, client: Client, answer: dict[str, Any]) -> Job:
        return cls(client=client, **cls.fields_of(answer))

    def status(self) -> dict[str, Any]:
        return self.client.status(self.request_id)

    def result(self, *, base64: bool | None = None) -> dict[str, Any]:
        return self.client.result(self.request_id, base64=base64)

    def wait(
        self,
        timeout: float = 600.0,
        interval: float = 1.0,
        stream: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        return self.client.wait(
            self.request_id, timeout=timeout, interval=interval, stream=stream, on_progress=on_progress
        )

    def cancel(self) -> dict[str, Any]:
        return self.client.cancel(self.request_id)

    def events(self, *, last_event_id: str | None = None, timeout: float | None = None) -> Iterator[Event]:
        return self.client.events(self.request_id, last_event_id=last_event_id, timeout=timeout)

    def download(
        self, directory: str | Path, *, stem: str | None = None, result: dict[str, Any] | None = None
    ) -> list[Path]:
        """Save the images (the job must be COMPLETED); `result` saves fetching it again."""
        return self.client.download(result or self.result(), directory, stem=stem)


@dataclass
class BatchInfo:
    """What POST /v2/batch answered. `items[i]` has `request_id` or `http_status` and `error`."""

    batch_id: str
    items: list[dict[str, Any]]
    replayed: bool = False

    @staticmethod
    def fields_of(answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "batch_id": str(answer["batch_id"]),
            "items": list(answer["items"]),
            "replayed": bool(answer.get("idempotent_replay")),
        }

    @property
    def accepted(self) -> int:
        return sum(1 for item in self.items if item.get("request_id"))

    @property
    def rejected(self) -> int:
        return len(self.items) - self.accepted

    @property
    def errors(self) -> dict[int, str]:
        """Index of each rejected item: the message it was rejected with."""
        return {i: str(item.get("error")) for i, item in enumerate(self.items) if not item.get("request_id")}


def settled(summary: dict[str, Any]) -> int:
    """Items of a batch summary that have ended (completed, failed or rejected)."""
    counts = summary.get("counts", {})
    return int(summary.get("total", 0)) - int(counts.get("QUEUED", 0)) - int(counts.get("PROCESSING", 0))


@dataclass
class Batch(BatchInfo):
    client: Client = field(repr=False, kw_only=True)

    @classmethod
    def from_answer(cls, client: Client, answer: dict[str, Any]) -> Batch:
        return cls(client=client, **cls.fields_of(answer))

    @property
    def jobs(self) -> list[Job | None]:
        """One per item, in order: a Job, or None for a rejected item."""
        return [Job.from_answer(self.client, item) if item.get("request_id") else None for item in self.items]

    def status(self) -> dict[str, Any]:
        return self.client.batch_status(self.batch_id)

    def wait(
        self, timeout: float = 600.0, interval: float = 1.0, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll the summary until every item has ended; the last summary. InferenceTimeout (with the
        batch id as request_id) if that takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            summary = self.status()
            if on_progress:
                on_progress(summary)
            if summary["done"]:
                return summary
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InferenceTimeout(self.batch_id, timeout)
            time.sleep(min(interval, remaining))
