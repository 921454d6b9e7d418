"""Logging set-up shared by every process: one line per record, JSON (default) or text.

Job-scoped fields: a record carries `request_id` (the job id) and `track_id` when
it is about a job, either given per call (`extra={"request_id": ...}`) or bound
for a stretch of code with `log_context(request_id=..., track_id=...)`, which
every record logged inside it inherits (a context variable, so threads and
tasks do not mix). JSON lines have the keys `time` (UTC, ISO 8601), `level`,
`logger`, `message`, then the job fields and any other `extra`, then `exc_info`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

JOB_FIELDS = ("request_id", "track_id")
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "inpaint_log_context", default=MappingProxyType({})
)
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields (request_id, track_id, ...) to every record logged inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def add_log_fields(**fields: Any) -> None:
    """Add fields to the innermost `log_context` (undone when that block ends)."""
    _context.set({**_context.get(), **fields})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record, without overriding fields given per call."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's job fields first, then any other `extra` it was given."""
    extras = {
        name: value
        for name, value in vars(record).items()
        if name not in _STANDARD and not name.startswith("_") and value is not None
    }
    return {**{name: extras.pop(name) for name in JOB_FIELDS if name in extras}, **extras}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_extras(record),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{name}={value}" for name, value in record_extras(record).items())
        line = super().format(record)
        return f"{line} {fields}" if fields else line


def configure_logging(level: str, log_format: str = "json") -> None:
    """Route every logger to stderr in `log_format` ("json" or "text") at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
