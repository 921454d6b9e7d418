"""The SDK's exceptions. All derive from InpaintError.

InferenceFailed and InferenceTimeout have the shape of the Segmind SDK's:
`request_id` on both, `detail` (the server's error message) on a failure.
"""

from __future__ import annotations

from typing import Any


class InpaintError(Exception):
    """Base of every error this package raises."""


class APIError(InpaintError):
    """The server refused a request (4xx/5xx other than a FAILED job).

    `status_code`: the HTTP status; `message`: the server's `error` sentence;
    `errors`: per-field details of a 400 (`field`, `message`, `limit`, `value`); `body`: the JSON body.
    """

    def __init__(self, status_code: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body
        self.errors: list[dict[str, Any]] = body.get("errors", []) if isinstance(body, dict) else []


class InferenceFailed(InpaintError):
    """The job ended FAILED. `detail`: the server's message (safe to show); `error_code`: e.g.
    `model_unavailable`, `cancelled`, `timeout`; `body`: the status body."""

    def __init__(
        self, request_id: str, detail: str, error_code: str | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"request {request_id} failed: {detail}" + (f" ({error_code})" if error_code else ""))
        self.request_id = request_id
        self.detail = detail
        self.error_code = error_code
        self.body = body or {}


class InferenceTimeout(InpaintError):
    """The job did not end in time (`timeout` seconds; None: the server's own wait, on /v1).
    It keeps running: collect it later with `client.job(e.request_id).wait()`."""

    def __init__(self, request_id: str, timeout: float | None = None, status: str | None = None) -> None:
        within = f" within {timeout:g} s" if timeout is not None else " within the server's wait"
        shown = f" (still {status})" if status else ""
        super().__init__(f"request {request_id} did not finish{within}{shown}")
        self.request_id = request_id
        self.timeout = timeout
        self.status = status


class WebhookVerificationError(InpaintError):
    """A webhook delivery's signature or timestamp did not verify."""


class EventStreamLost(InpaintError):
    """The event stream kept dropping, even after reconnecting with Last-Event-ID.
    `wait(stream=True)` falls back to polling when this happens."""
