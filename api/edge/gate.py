"""The input gate: a request whose URL, headers or body no route could use is a 400 here.

Pure ASGI, inside the body limit (which has already refused oversized bodies):

- a NUL in the path, the query or a header is refused (PostgreSQL cannot store one;
  a NUL in an id must read as bad input, never as a database outage);
- a POST, PUT or PATCH body, if it has one, must be JSON as `api.edge.json_body`
  defines it, whatever its Content-Type: every route that takes a body takes JSON,
  and clients that forget the header (curl's `-d`) are served. A body that parses
  is passed on as `application/json`, and its value is left in the request's state
  (`json_body`) so that no route parses it twice;
- except a `multipart/form-data` body to a route that takes an image (`api.edge.multipart`):
  it is parsed as it streams in, with a limit per file (a 413 naming the field), and its
  fields are left in `json_body` as the JSON object the route takes.

The answer speaks the route's dialect: ModelsLab's `{"status": "error", "message"}`
on its routes, `{"error", "errors"}` everywhere else.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.edge.answer import error_content, send_json
from api.edge.json_body import MalformedBody, parse_json
from api.edge.multipart import FormLimits, PartTooLarge, read_form, takes_form

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
PARSE_IN_THREAD_BYTES = 256 * 1024
"""Bodies larger than this are parsed off the event loop (a 20 MB body takes tens of milliseconds)."""


class InputGate:
    def __init__(self, app: ASGIApp, *, forms: FormLimits | None = None) -> None:
        """forms: the limits of multipart submits; None refuses multipart like any non-JSON body."""
        self.app = app
        self.forms = forms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_url_and_headers(scope)
        except MalformedBody as exc:
            await refuse(scope, send, exc)
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        if self.forms is not None and takes_form(scope, header(scope, b"content-type")):
            await self.pass_form(scope, receive, send, self.forms)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left (or the body limit answered 413) before the body was complete
        if body:
            content_type = header(scope, b"content-type")
            try:
                value = await parse(body, content_type)
            except MalformedBody as exc:
                await refuse(scope, send, exc)
                return
            scope = as_json(scope)
            scope.setdefault("state", {})["json_body"] = value
        await self.app(scope, replay(body, receive), send)

    async def pass_form(self, scope: Scope, receive: Receive, send: Send, limits: FormLimits) -> None:
        try:
            value = await read_form(scope, receive, limits)
        except MalformedBody as exc:
            await refuse(scope, send, exc)
            return
        except PartTooLarge as exc:
            entry = {"field": exc.field, "message": exc.message, "limit": exc.limit, "value": None}
            content = error_content(scope, exc.message, errors=[entry])
            await send_json(send, 413, content, headers={"Connection": "close"})
            return
        if value is None:
            return  # the client left (or the body limit answered 413) before the form was complete
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", b"0")]
        scope = {**scope, "headers": headers, "state": {**scope.get("state", {}), "json_body": value}}
        await self.app(scope, replay(b"", receive), send)


async def parse(body: bytes, content_type: str | None) -> Any:
    if len(body) > PARSE_IN_THREAD_BYTES:
        return await run_in_threadpool(parse_json, body, content_type=content_type)
    return parse_json(body, content_type=content_type)


def check_url_and_headers(scope: Scope) -> None:
    if "\x00" in scope["path"]:
        raise MalformedBody("path", "contains a NUL character (%00), which no id or name accepts")
    query: bytes = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query.lower():
        raise MalformedBody("query", "contains a NUL character (%00), which no parameter accepts")
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            raise MalformedBody(name.decode("latin-1"), "header contains a NUL character")


async def read_body(receive: Receive) -> bytes | None:
    """The whole body; None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body over once, then waits on the real channel (disconnects)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def as_json(scope: Scope) -> Scope:
    """The scope with Content-Type application/json, so that FastAPI parses model bodies whatever was sent."""
    content_type = header(scope, b"content-type")
    if content_type is not None and "json" in content_type.lower():
        return scope
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


async def refuse(scope: Scope, send: Send, exc: MalformedBody) -> None:
    entry = {"field": exc.field, "message": exc.message, "limit": None, "value": None}
    await send_json(send, 400, error_content(scope, exc.message, errors=[entry]))
