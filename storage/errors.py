"""The domain's errors. Each message is safe to show to a client; api.errors maps them to HTTP."""

from __future__ import annotations

from typing import Any


class InpaintError(Exception):
    """Base class. `message` never holds a traceback, a path or an internal address."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(InpaintError):
    """A request field is out of bounds: names the field, the limit and the given value."""

    def __init__(self, field: str, message: str, *, limit: Any = None, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.limit = limit
        self.value = value


class PayloadTooLarge(InpaintError):
    pass


class NotFound(InpaintError):
    pass


class Unauthorized(InpaintError):
    pass


class Forbidden(InpaintError):
    """The key is known but may not do this: another model, or an admin route."""


class OutOfCredits(InpaintError):
    """The key has fewer credits left than the request's images."""


class RateLimited(InpaintError):
    """The key's token bucket is empty; `retry_after` is the seconds until it holds a token."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(InpaintError):
    """The request is valid but the resource is not in a state that allows it."""


class Unavailable(InpaintError):
    """A dependency (database, broker, storage) cannot be reached right now."""


class IllegalTransition(InpaintError):
    """A job status change that the state machine does not allow: a programming error."""


class JobFailure(InpaintError):
    """Ends a job FAILED with `code` and a message safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
