"""Refuse request bodies over INPAINT_MAX_BODY_BYTES with 413, before they are read in full.

Pure ASGI, so nothing is buffered on the way (BaseHTTPMiddleware would):

- a declared Content-Length over the limit is answered at once, and the app is
  never called, so not one byte of the body is read;
- a body without a length (chunked) is counted as the app reads it; at the limit
  the 413 goes out, the app is told the client left, and whatever the app then
  answers is dropped.

The 413 carries `Connection: close`, so the server stops reading the rest.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.edge.answer import send_json


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_too_large(send, f"the request body is {declared} bytes, more than the limit of {self.max_bytes}")
            return
        await self.app(scope, *CountedBody(receive, send, self.max_bytes).channels())


class CountedBody:
    """The receive and send of one request, counting body bytes and answering 413 at the limit."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int) -> None:
        self._receive, self._send, self.max_bytes = receive, send, max_bytes
        self.received = 0
        self.response_started = False
        self.refused = False

    def channels(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.max_bytes:
            return message
        if not self.response_started and not self.refused:
            self.refused = True
            await send_too_large(self._send, f"the request body is more than the limit of {self.max_bytes} bytes")
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the 413 has gone out: whatever the app answers now is dropped
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def send_too_large(send: Send, message: str) -> None:
    await send_json(send, 413, {"error": message}, headers={"Connection": "close"})
