"""Connection deadlines of the real `inpaint-api` process, set through its environment, against a raw
socket: a silent client, headers or a body that trickle, keep-alive reuse and an idle keep-alive
connection. Only the API runs (embedded: SQLite); no worker is needed to answer or to refuse.

Both uvicorn protocols, an app slower than the deadlines and pipelining: tests/api/test_server.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.support.images import job_body
from tests.support.sockets import connect, read_response, request, trickle, wait_closed
from tests.support.stack import Stack, stack_env

KEEP_ALIVE, HEADER, BODY = 1, 3.0, 1.0
"""Keep-alive under the header deadline, so that an idle connection closed in time shows keep-alive's hand."""
SLACK = 2.0
EARLY = 0.05
KEY = "iq_connection-deadlines-test-key-0123456789"
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("deadlines")
    env = {
        **stack_env("embedded", workdir, services={}),
        "INPAINT_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE),
        "INPAINT_HEADER_TIMEOUT_SECONDS": str(HEADER),
        "INPAINT_BODY_TIMEOUT_SECONDS": str(BODY),
        "INPAINT_MAX_BODY_BYTES": str(MAX_BODY),
        "INPAINT_BOOTSTRAP_API_KEY": KEY,
        "INPAINT_SUBMIT_UNSERVABLE": "accept",  # no worker runs: submits are queued
    }
    stack = Stack(name="deadlines", workdir=workdir, env=env)
    stack.cli("inpaint-admin", "migrate")
    stack.start_api()
    yield stack
    stack.stop_all()


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(api: Stack) -> None:
    with connect(api.port) as sock:
        seconds, received = wait_closed(sock, time.monotonic(), HEADER + SLACK)
    assert received == b""
    assert seconds >= HEADER - EARLY


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_header_deadline(api: Stack) -> None:
    """A byte every 0.25 s keeps the connection busy (well inside keep-alive), but the headers never end."""
    head = request("/healthz", port=api.port, headers={"X-Padding": "a" * 100})
    with connect(api.port) as sock:
        seconds, received, sent = trickle(sock, head, every=0.25, limit=HEADER + SLACK)
    assert received == b""
    assert seconds >= HEADER - EARLY
    assert 0 < sent < len(head)


def test_a_body_sent_slowly_gets_408_at_the_body_deadline(api: Stack) -> None:
    body = json.dumps(job_body()).encode()
    headers = {"x-api-key": KEY, "Content-Type": "application/json", "Content-Length": str(len(body))}
    with connect(api.port) as sock:
        sock.sendall(request("/v2/erase", port=api.port, method="POST", headers=headers))
        seconds, received, sent = trickle(sock, body, every=0.1, limit=BODY + SLACK)
    assert seconds >= BODY - EARLY
    assert 0 < sent < len(body)
    head, _, answer = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert json.loads(answer) == {"error": "the request body was not complete 1 s after its headers"}


def test_a_keep_alive_client_makes_two_requests_on_one_connection(api: Stack) -> None:
    with connect(api.port) as sock:
        for _ in range(2):
            sock.sendall(request("/healthz", port=api.port))
            status, headers, body = read_response(sock)
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            assert headers.get("connection") != "close"
            time.sleep(KEEP_ALIVE / 2)


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_seconds(api: Stack) -> None:
    with connect(api.port) as sock:
        sock.sendall(request("/healthz", port=api.port))
        assert read_response(sock)[0] == 200
        seconds, received = wait_closed(sock, time.monotonic(), HEADER)
    assert received == b""
    assert KEEP_ALIVE - EARLY <= seconds < HEADER, "closed by the header deadline, not by keep-alive"


def test_a_declared_length_over_the_limit_is_still_refused_at_once(api: Stack) -> None:
    """The body limit answers 413 before the body deadline could matter, and closes the connection."""
    headers = {"x-api-key": KEY, "Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)}
    with connect(api.port) as sock:
        sent_at = time.monotonic()
        sock.sendall(request("/v2/erase", port=api.port, method="POST", headers=headers))
        status, headers, body = read_response(sock)
        assert time.monotonic() - sent_at < BODY
        assert status == 413, body
        assert headers.get("connection") == "close"
        wait_closed(sock, time.monotonic(), SLACK)
