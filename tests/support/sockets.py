"""Raw HTTP/1.1 over a socket, for tests of what a server does with a client that is slow or silent.

Every wait here is bounded: a server that never closes fails the test, it never hangs it.
"""

from __future__ import annotations

import select
import socket
import time


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def request(path: str, *, port: int, method: str = "GET", headers: dict[str, str] | None = None) -> bytes:
    """A request's head: request line, Host and the given headers, and the blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body: (status, headers with lower-case names, body).
    It reads no byte past the response, so pipelined responses are read one call each."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"the connection closed without a response: {head!r}"
        head += byte
    status_line, *header_lines = head.decode().strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    body = b""
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(int(headers["content-length"]) - len(body))
        assert chunk, f"the connection closed in the middle of the body: {body!r}"
        body += chunk
    return int(status_line.split()[1]), headers, body


def wait_closed(sock: socket.socket, since: float, limit: float) -> tuple[float, bytes]:
    """Read until the server closes the connection (end of stream or a reset): (seconds from `since`
    until then, what it sent). AssertionError if it is still open `limit` seconds after `since`."""
    received = b""
    while True:
        left = since + limit - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise AssertionError(f"the connection is still open {limit:g} s on; it sent {received!r}")
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - since, received
        received += chunk


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes, int]:
    """Send `data` a byte every `every` seconds until the server closes the connection: (seconds until
    it closed, what it sent, bytes sent). AssertionError if it is still open after `limit` seconds."""
    start, sent = time.monotonic(), 0
    for byte in data:
        if select.select([sock], [], [], every)[0]:
            break  # an answer, or the end of the stream: the server is done with us
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
    else:
        raise AssertionError(f"all {len(data)} bytes went out, a byte every {every:g} s, and the server waited")
    seconds, received = wait_closed(sock, start, limit)
    return seconds, received, sent
