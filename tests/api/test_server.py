"""The read deadlines of api/edge/server.py, on both uvicorn protocols: uvicorn serving a small echo app
on a loopback port, in a thread, and a raw socket playing the slow or silent client.

The real `inpaint-api` process with its settings: tests/e2e/api/test_connection_deadlines.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.edge.server import Deadlines, H11Deadlines, HttpToolsDeadlines, ServerConfig, deadlines_of
from tests.support.services import free_port
from tests.support.sockets import connect, read_response, request, trickle, wait_closed
from tests.support.waiting import wait_until

DEADLINES = Deadlines(header_seconds=0.6, body_seconds=0.4)
KEEP_ALIVE = 1  # uvicorn's keep-alive is whole seconds
SLOW_APP_SECONDS = 1.2
"""How long /slow works on a request: longer than every deadline and the keep-alive."""
SLACK = 2.0
"""Seconds a deadline may fire late on a loaded machine before the test calls it missed."""
EARLY = 0.05
"""Timers may round: a close this much before a deadline still counts as the deadline's."""


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers {"path", "received": bytes}; /slow works a while first."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(SLOW_APP_SECONDS)
    body = json.dumps({"path": scope["path"], "received": received}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=[HttpToolsDeadlines, H11Deadlines], ids=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    config = ServerConfig(
        echo,
        deadlines=DEADLINES,
        http=request.param,
        host="127.0.0.1",
        port=port,
        timeout_keep_alive=KEEP_ALIVE,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, what="uvicorn to start", interval=0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "uvicorn did not stop"


def test_a_silent_connection_is_closed_at_the_header_deadline(port: int) -> None:
    with connect(port) as sock:
        seconds, received = wait_closed(sock, time.monotonic(), DEADLINES.header_seconds + SLACK)
    assert received == b""
    assert seconds >= DEADLINES.header_seconds - EARLY


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_header_deadline(port: int) -> None:
    """The client makes progress all along (a byte every 0.1 s), but never finishes its headers in time."""
    head = request("/", port=port, headers={"X-Padding": "a" * 100})
    with connect(port) as sock:
        seconds, received, sent = trickle(sock, head, every=0.1, limit=DEADLINES.header_seconds + SLACK)
    assert received == b""
    assert DEADLINES.header_seconds - EARLY <= seconds
    assert 0 < sent < len(head)


def test_a_body_sent_slowly_gets_408_at_the_body_deadline(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(request("/", port=port, method="POST", headers={"Content-Length": "1000"}))
        seconds, received, sent = trickle(sock, b"x" * 1000, every=0.05, limit=DEADLINES.body_seconds + SLACK)
    assert DEADLINES.body_seconds - EARLY <= seconds
    assert 0 < sent < 1000
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert b"\r\nconnection: close" in head.lower()
    assert json.loads(body) == {"error": "the request body was not complete 0.4 s after its headers"}


def test_the_clock_stops_while_the_app_works_and_restarts_after_the_response(port: int) -> None:
    """/slow works longer than every deadline on a keep-alive connection: nothing is cut, a second
    request is served on the same connection, and then the idle connection is closed."""
    with connect(port) as sock:
        sock.sendall(request("/slow", port=port, method="POST", headers={"Content-Length": "5"}) + b"hello")
        status, _, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"path": "/slow", "received": 5})
        sock.sendall(request("/again", port=port))
        status, headers, body = read_response(sock)
        answered = time.monotonic()
        assert (status, json.loads(body)) == (200, {"path": "/again", "received": 0})
        assert headers.get("connection") != "close"
        seconds, received = wait_closed(sock, answered, KEEP_ALIVE + SLACK)
    assert received == b""
    assert seconds >= min(DEADLINES.header_seconds, KEEP_ALIVE) - EARLY


def test_pipelined_requests_wait_behind_a_slow_one_without_being_cut(port: int) -> None:
    """Two requests in one write: the second is read at once but answered after /slow."""
    with connect(port) as sock:
        sock.sendall(
            request("/slow", port=port)
            + request("/next", port=port, method="POST", headers={"Content-Length": "2"})
            + b"ok"
        )
        first = read_response(sock)
        second = read_response(sock)
    assert (first[0], json.loads(first[2])) == (200, {"path": "/slow", "received": 0})
    assert (second[0], json.loads(second[2])) == (200, {"path": "/next", "received": 2})


def test_a_plain_uvicorn_config_is_refused_with_its_type_named() -> None:
    with pytest.raises(TypeError, match="need an api.edge.server.ServerConfig, not a Config"):
        deadlines_of(uvicorn.Config(echo, http=HttpToolsDeadlines))
