"""Server-sent events: parsing the stream of GET /v2/requests/{id}/events, line by line.

Events: `queued` (status body with queue_position), `progress` (status body with progress),
`completed` (the result body) and `failed` (the status body with error and error_code); `error`
when the job is unknown or has expired. Data is JSON. An event is complete only at its blank
line, so an event cut off by a dropped connection is never delivered. Reconnecting with
Last-Event-ID resumes after the last complete event (reconnections wait 0.25 s, doubling to 5 s).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from inpaint_client.errors import APIError, EventStreamLost, InferenceTimeout

TERMINAL_EVENTS = ("completed", "failed", "error")
SSE_READ_TIMEOUT = 30.0
"""The server sends a keep-alive every 15 s; twice that silent means the connection is dead."""


@dataclass(frozen=True)
class Event:
    """One server-sent event. `data` always has `status` except for `error` events."""

    id: str | None
    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS


class EventDecoder:
    """Feed lines (without their line ending); a blank line completes an event and returns it."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._complete()
        if line.startswith(":"):
            return None  # a comment: keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        return None

    def _complete(self) -> Event | None:
        if not self._data:
            self._reset()
            return None
        text = "\n".join(self._data)
        try:
            data = json.loads(text)
        except ValueError:
            data = {"raw": text}
        event = Event(id=self._id, event=self._event, data=data if isinstance(data, dict) else {"raw": data})
        self._reset()
        return event


class EventFollower:
    """The state of following one job's events across reconnections; the I/O is the caller's.

    Per connection: `headers()` and `read_timeout()`; per line: `check_deadline()` then
    `accept(decoder.feed(line))`; when the connection ends without a terminal event (dropped,
    closed or timed out): `dropped(cause)` gives the seconds to wait before reconnecting, or raises
    InferenceTimeout (past the deadline) or EventStreamLost (too many failures in a row).
    """

    def __init__(
        self,
        request_id: str,
        *,
        last_event_id: str | None,
        timeout: float | None,
        max_retries: int,
        deadline: float | None = None,
    ) -> None:
        self.request_id = request_id
        self.path = f"/v2/requests/{request_id}/events"
        self.last_event_id = last_event_id
        self.timeout = timeout
        self.deadline = deadline if deadline is not None or timeout is None else time.monotonic() + timeout
        """time.monotonic() past which InferenceTimeout is raised; None: never."""
        self.max_retries = max_retries
        self.failures = 0

    def headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        return headers

    def read_timeout(self) -> httpx.Timeout:
        """Reads wait for the next keep-alive, or only until the deadline."""
        read = SSE_READ_TIMEOUT
        if self.deadline is not None:
            read = min(read, max(self.deadline - time.monotonic(), 0.05))
        return httpx.Timeout(30.0, read=read)

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise InferenceTimeout(self.request_id, self.timeout)

    def accept(self, event: Event | None) -> Event | None:
        """A complete event: remembered for resuming. An `error` event (unknown or expired job) raises."""
        if event is None:
            return None
        if event.event == "error":
            raise APIError(404, str(event.data.get("error", "not found")), event.data)
        self.failures = 0
        self.last_event_id = event.id or self.last_event_id
        return event

    def dropped(self, cause: Exception | None) -> float:
        self.check_deadline()
        self.failures += 1
        if self.failures > self.max_retries:
            raise EventStreamLost(f"the event stream of {self.request_id} dropped {self.failures} times") from cause
        return min(0.25 * 2 ** (self.failures - 1), 5.0) * random.uniform(0.8, 1.2)
