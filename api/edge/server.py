"""The HTTP server's read deadlines: uvicorn's protocols, with a clock on what the client owes.

Left alone, uvicorn waits for ever on a client that is sending a request; only an idle
keep-alive connection times out. Here every connection also has

- a header deadline, from the connection's opening (or the end of the previous response)
  until the request's headers are complete: past it the connection is closed;
- a body deadline, from the end of the headers until the whole body is in: past it the
  client gets a 408 (when no response has started) and the connection is closed.

The clock runs only while the server waits on the client, never while the app works on a
request. Both of uvicorn's HTTP/1.1 protocols are covered: httptools (what uvicorn picks
when it is installed, as `uvicorn[standard]` does) and h11. `ServerConfig` carries the
deadlines to the protocols, into `--workers` processes too: uvicorn pickles the config for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

log = logging.getLogger(__name__)

Deadline = Literal["header", "body"]


@dataclass(frozen=True)
class Deadlines:
    """Seconds a client has for a request's headers, then for its body."""

    header_seconds: float
    body_seconds: float

    def seconds(self, deadline: Deadline) -> float:
        return self.header_seconds if deadline == "header" else self.body_seconds


class ServerConfig(uvicorn.Config):
    """uvicorn's Config with the read deadlines; the HTTP protocol defaults to httptools' with them."""

    def __init__(self, app: str | Callable[..., Any], *, deadlines: Deadlines, **options: Any) -> None:
        options.setdefault("http", HttpToolsDeadlines)
        super().__init__(app, **options)
        self.deadlines = deadlines


def serve(config: ServerConfig) -> None:
    """What `uvicorn.run` does with an import string: serve in this process, or in `workers` processes."""
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def deadlines_of(config: uvicorn.Config) -> Deadlines:
    if not isinstance(config, ServerConfig):
        raise TypeError(f"the read deadlines need an api.edge.server.ServerConfig, not a {type(config).__name__}")
    return config.deadlines


class ReadClock:
    """The one deadline a connection runs at a time: the header deadline, the body deadline, or none."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines, on_pass: Callable[[Deadline], None]
    ) -> None:
        self.loop, self.deadlines, self.on_pass = loop, deadlines, on_pass
        self.running: Deadline | None = None
        self.timer: asyncio.TimerHandle | None = None

    def run(self, deadline: Deadline | None) -> None:
        """Run this deadline: the one already running goes on, any other is stopped first."""
        if deadline == self.running:
            return
        self.stop()
        if deadline is not None:
            self.timer = self.loop.call_later(self.deadlines.seconds(deadline), self.passed, deadline)
            self.running = deadline

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.running = None, None

    def passed(self, deadline: Deadline) -> None:
        self.timer, self.running = None, None
        self.on_pass(deadline)


class ReadDeadlines(asyncio.Protocol):
    """The half both protocols share: after every event that can change what the client owes, the
    clock is set to what `owed()` says. Each protocol also calls `set_clock()` when a response ends."""

    # Set by the uvicorn protocol this is mixed into.
    config: uvicorn.Config
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    server_state: ServerState
    client: tuple[str, int] | None

    clock: ReadClock
    upgraded = False

    def owed(self) -> Deadline | None:
        """What the client owes now that the server waits for: the headers, the body, or nothing."""
        raise NotImplementedError

    def response_started(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.clock = ReadClock(self.loop, deadlines_of(self.config), self.deadline_passed)
        super().connection_made(transport)
        self.set_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self.clock.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.set_clock()

    def set_clock(self) -> None:
        if self.upgraded or self.transport.is_closing():
            self.clock.stop()
        else:
            self.clock.run(self.owed())

    def deadline_passed(self, deadline: Deadline) -> None:
        if self.transport.is_closing():
            return
        seconds = self.clock.deadlines.seconds(deadline)
        if deadline == "header":
            log.info("closed a connection from %s: its request headers took over %g s", self.peer(), seconds)
        else:
            log.info("closed a connection from %s: its request body took over %g s", self.peer(), seconds)
            if not self.response_started():
                message = f"the request body was not complete {seconds:g} s after its headers"
                self.transport.write(timeout_response(self.server_state.default_headers, message))
        self.transport.close()

    def peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown peer"


class HttpToolsDeadlines(ReadDeadlines, HttpToolsProtocol):
    """httptools' protocol with the read deadlines. Its parser's callbacks say where a request stands;
    a pipelined request waits, reading paused, until the ones before it are answered."""

    reading: Literal["idle", "headers", "body"] = "idle"

    def owed(self) -> Deadline | None:
        if self.reading == "body":
            return None if self.pipeline else "body"  # queued: its body is not being read yet
        answering = self.pipeline or (self.cycle is not None and not self.cycle.response_complete)
        return None if answering else "header"

    def response_started(self) -> bool:
        return self.cycle is not None and self.cycle.response_started

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = "headers"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.reading = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading = "idle"

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.set_clock()

    def handle_websocket_upgrade(self) -> None:
        self.upgraded = True
        self.clock.stop()
        super().handle_websocket_upgrade()


class H11Deadlines(ReadDeadlines, H11Protocol):
    """h11's protocol with the read deadlines. h11's state for the client says where a request stands;
    h11 reads no request before the previous one is answered."""

    def owed(self) -> Deadline | None:
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return "body"
        answering = self.cycle is not None and not self.cycle.response_complete
        return "header" if state is h11.IDLE and not answering else None

    def response_started(self) -> bool:
        return self.cycle is not None and self.cycle.response_started

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.set_clock()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self.upgraded = True
        self.clock.stop()
        super().handle_websocket_upgrade(event)


def timeout_response(default_headers: list[tuple[bytes, bytes]], message: str) -> bytes:
    """A whole 408 with a JSON body `{"error": message}`, written straight to the socket."""
    body = json.dumps({"error": message}).encode()
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"HTTP/1.1 408 Request Timeout\r\n" + head + b"\r\n" + body
