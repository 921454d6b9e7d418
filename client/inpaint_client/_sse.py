"""Server-sent events: parsing the stream of GET /v2/requests/{id}/events, line by line.

Events: `queued` (status body with queue_position), `progress` (status body with progress),
`completed` (the result body) and `failed` (the status body with error and error_code); `error`
when the job is unknown or has expired. Data is JSON. An event is complete only at its blank
line, so an event cut off by a dropped connection is never delivered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TERMINAL_EVENTS = ("completed", "failed", "error")


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
