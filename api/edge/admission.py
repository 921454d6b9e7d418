"""Admission: no key can take what every key shares. Over a limit is a 429 with Retry-After at once,
never a wait in a queue.

Each API process counts, for the whole process and for each caller:

- requests in progress (`max_requests`, `max_requests_per_key`): a slow client, or a
  submit whose image URL trickles, holds one of its own slots, not everyone's threads;
- open event streams (`max_event_streams`, `max_event_streams_per_key`), apart, since a
  stream lasts as long as its job and holds no thread (api.live.watcher);
- image URL fetches (`max_image_fetches`, `max_image_fetches_per_key`), taken in
  api.submit around each fetch.

The caller is the API key as sent (x-api-key, or a bearer token), hashed; a request
without one (the Stable Diffusion API enterprise sends `key` in the body, signed links
carry none) counts against its client address. The health probes are never limited.
Counts are per process: with N API processes, a key may hold N times its limit.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.edge.answer import error_content, send_json
from storage.errors import RateLimited

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
STREAM_PATH = re.compile(r"^/v2/requests/[^/]+/events$")
RETRY_AFTER_SECONDS = 1


@dataclass
class Slots:
    """Counters of things in progress, for the process and for each caller. Thread-safe."""

    what: str
    total: int
    per_caller: int
    total_setting: str
    per_caller_setting: str
    _held: dict[str, int] = field(default_factory=dict)
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def in_use(self) -> int:
        return self._count

    def take(self, caller: str) -> None:
        """Hold one slot for `caller`, or RateLimited naming the limit that is full."""
        with self._lock:
            held = self._held.get(caller, 0)
            if held >= self.per_caller:
                who = "this client address" if caller.startswith("address:") else "this key"
                raise RateLimited(
                    f"{who} already has {held} {self.what} in progress, its limit "
                    f"({self.per_caller_setting}={self.per_caller}); retry when one has finished",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            if self._count >= self.total:
                raise RateLimited(
                    f"the server already has {self._count} {self.what} in progress, its limit "
                    f"({self.total_setting}={self.total}); retry in a moment",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            self._held[caller] = held + 1
            self._count += 1

    def give_back(self, caller: str) -> None:
        with self._lock:
            held = self._held.get(caller, 0) - 1
            if held > 0:
                self._held[caller] = held
            else:
                self._held.pop(caller, None)
            self._count -= 1

    @contextmanager
    def held(self, caller: str) -> Iterator[None]:
        self.take(caller)
        try:
            yield
        finally:
            self.give_back(caller)


def caller_of(scope: Scope) -> str:
    """Who is asking: a digest of the key header (never the key itself), else the client address."""
    for name, value in scope.get("headers", []):
        if name == b"x-api-key" or (name == b"authorization" and value[:7].lower() == b"bearer "):
            secret = value[7:].strip() if name == b"authorization" else value
            return "key:" + hashlib.sha256(secret).hexdigest()[:32]
    client = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}"


class Admission:
    """Pure ASGI: holds a request (or stream) slot from the request's start to its response's end."""

    def __init__(self, app: ASGIApp, *, requests: Slots, streams: Slots) -> None:
        self.app = app
        self.requests = requests
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        slots = self.streams if STREAM_PATH.match(scope["path"]) else self.requests
        caller = caller_of(scope)
        try:
            slots.take(caller)
        except RateLimited as exc:
            await too_many(scope, send, exc)
            return
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                slots.give_back(caller)

        async def send_then_free(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                give_back()  # before the last byte goes out: a client's next request must find the slot free
            await send(message)

        try:
            await self.app(scope, receive, send_then_free)
        finally:
            give_back()


async def too_many(scope: Scope, send: Send, exc: RateLimited) -> None:
    content = error_content(scope, exc.message, retry_after=RETRY_AFTER_SECONDS)
    await send_json(send, 429, content, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
