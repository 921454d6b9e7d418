"""Request size: a body over INPAINT_MAX_BODY_BYTES gets 413 before it is read in full, over a real
socket to the real API process: with a declared length (answered at once) and chunked (counted)."""

from __future__ import annotations

import base64
import io
import json
import select
import socket
import time

import httpx
import numpy as np
from PIL import Image

from storage.settings import Settings
from tests.support.stack import Stack

LIMIT = Settings.model_fields["max_body_bytes"].default
MiB = 1024 * 1024


def open_request(stack: Stack, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=30)
    lines = [
        "POST /v2/erase HTTP/1.1",
        f"Host: 127.0.0.1:{stack.port}",
        f"x-api-key: {stack.user_key}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def readable(sock: socket.socket, wait: float = 0.0) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed without a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def test_declared_length_over_the_limit_is_refused_before_any_body_is_read(embedded: Stack) -> None:
    """Headers announce 100 MiB, then the body trickles: the 413 comes after a handful of bytes."""
    sock = open_request(embedded, {"Content-Length": str(100 * MiB)})
    sent = 0
    deadline = time.monotonic() + 30
    while not readable(sock, 0.05) and time.monotonic() < deadline:
        sock.sendall(b"{")
        sent += 1
    status, headers, body = read_response(sock)
    assert status == 413, body
    assert headers.get("connection") == "close"
    expected = f"the request body is {100 * MiB} bytes, more than the limit of {LIMIT}"
    assert json.loads(body)["error"] == expected
    assert sent < 1000, f"{sent} bytes went out before the answer"
    sock.close()
    assert httpx.get(f"{embedded.base_url}/healthz").status_code == 200


def test_chunked_body_is_counted_and_reading_stops_at_the_limit(embedded: Stack) -> None:
    """No length is declared: the server counts, answers 413 once past the limit and stops reading."""
    sock = open_request(embedded, {"Transfer-Encoding": "chunked"})
    piece = b"a" * (256 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent, planned = 0, 64 * MiB
    try:
        while sent < planned and not readable(sock):
            sock.sendall(chunk)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, headers, body = read_response(sock)
    assert status == 413, body
    assert "more than the limit" in json.loads(body)["error"]
    assert LIMIT < sent < planned, f"sent {sent} bytes: the server did not stop reading at {LIMIT}"
    sock.close()
    assert httpx.get(f"{embedded.base_url}/healthz").status_code == 200


def rgba_noise_png_base64(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_default_limit_fits_two_1024px_pngs_in_base64(embedded: Stack) -> None:
    """Incompressible 1024x1024 RGBA, the worst case, twice: the body passes the limit (404: no model)."""
    body = json.dumps({"prompt": "x", "image": rgba_noise_png_base64(1), "mask": rgba_noise_png_base64(2)})
    assert 11 * 10**6 < len(body) < LIMIT
    json_type = {"content-type": "application/json"}
    with embedded.client() as client:
        response = client.post("/v2/no-such-model", content=body, headers=json_type)
        assert response.status_code == 404, response.text
        padded = body + " " * (LIMIT - len(body) + 1)
        over = client.post("/v2/no-such-model", content=padded, headers=json_type)
        assert over.status_code == 413, over.text
