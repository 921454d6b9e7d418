"""Fetching user-supplied URLs: public addresses only, pinned, no redirects, a real deadline, a byte cap."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.egress.fetch import FetchError, FetchPolicy, fetch, is_public
from tests.support.http_server import Reply

LOOPBACK = FetchPolicy(timeout=3, max_bytes=1000, allow_loopback=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:8.8.8.8",
        "64:ff9b::7f00:1",
        "64:ff9b::808:808",
        "2002:7f00:1::",
        "2002:808:808::",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],
)
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_the_loopback_switch_admits_loopback_and_nothing_else() -> None:
    for address in ("127.0.0.1", "127.5.6.7", "::1"):
        assert is_public(ipaddress.ip_address(address), allow_loopback=True)
    for address in ("10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "0.0.0.0"):
        assert not is_public(ipaddress.ip_address(address), allow_loopback=True)


def test_loopback_is_refused_unless_switched_on(http_server) -> None:
    http_server.routes["/x"] = Reply(200, b"hello")
    with pytest.raises(FetchError, match="not public"):
        fetch(f"{http_server.url}/x", FetchPolicy())
    assert http_server.connections == 0, "a refused URL was connected to"
    assert fetch(f"{http_server.url}/x", LOOPBACK).body == b"hello"


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0x7f.0.0.1", "127.1", "127.0.1", "0", "0x0", "017700000001"]
)
def test_numeric_ip_spellings_are_refused_even_with_loopback_on(http_server, host: str) -> None:
    with pytest.raises(FetchError, match="neither a host name|not a valid URL"):
        fetch(f"http://{host}:{http_server.port}/x", LOOPBACK)
    assert http_server.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://x",
        "http://",
        "http://user:pw@localhost/x",
        "http://localhost@localhost/x",
    ],
)
def test_only_plain_http_and_https(url: str) -> None:
    with pytest.raises(FetchError):
        fetch(url, LOOPBACK)


def test_the_name_is_resolved_once_and_that_address_is_used(http_server, monkeypatch) -> None:
    """DNS rebinding: a second lookup would answer 127.0.0.2, where nothing listens."""
    http_server.routes["/x"] = Reply(200, b"pinned")
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1", "127.0.0.2", "127.0.0.2"])
    calls: list[str] = []

    def rebinding(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "rebind.test":  # the connect step looks up the pinned literal: pass it through
            return real(host, port, *args, **kwargs)
        calls.append(host)
        return real(next(answers), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    result = fetch(f"http://rebind.test:{http_server.port}/x", LOOPBACK)
    assert (result.status_code, result.body, result.address) == (200, b"pinned", "127.0.0.1")
    assert calls == ["rebind.test"], "the host name was looked up more than once"
    assert http_server.received[-1].headers["host"] == f"rebind.test:{http_server.port}"


def test_host_header_keeps_the_name_and_caller_cannot_override_it(http_server) -> None:
    http_server.routes["/x"] = Reply(200, b"ok")
    fetch(
        f"http://LocalHost.:{http_server.port}/x?q=1",
        LOOPBACK,
        method="POST",
        content=b"{}",
        headers={"Host": "evil.example", "content-type": "application/json"},
    )
    got = http_server.received[-1]
    assert (got.method, got.path, got.body) == ("POST", "/x?q=1", b"{}")
    assert got.headers["host"] == f"localhost:{http_server.port}"
    assert got.headers["content-type"] == "application/json"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """A TLS listener with a self-signed certificate that records the SNI name of each handshake."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], names
    listener.close()


def test_tls_sends_the_url_host_as_sni_and_checks_the_certificate(tls_server) -> None:
    port, names = tls_server
    with pytest.raises(FetchError, match="could not connect"):  # self-signed: the check must fail
        fetch(f"https://localhost:{port}/x", LOOPBACK)
    assert names == ["localhost"]


def test_redirects_are_not_followed(http_server) -> None:
    http_server.routes["/r"] = Reply(302, b"", {"location": "/x"})
    http_server.routes["/x"] = Reply(200, b"target")
    assert fetch(f"{http_server.url}/r", LOOPBACK).status_code == 302
    assert [r.path for r in http_server.received] == ["/r"]


def test_byte_cap_on_declared_and_streamed_lengths(http_server) -> None:
    http_server.routes["/big"] = Reply(200, b"x" * 5000)
    with pytest.raises(FetchError, match="limit of 1000"):
        fetch(f"{http_server.url}/big", LOOPBACK)
    chunk = b"100\r\n" + b"y" * 256 + b"\r\n"  # no Content-Length: the cap must count while streaming
    with (
        drip_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk * 100, pause=0.01, piece=len(chunk)
        ) as port,
        pytest.raises(FetchError, match="limit of 1000"),
    ):
        fetch(f"http://127.0.0.1:{port}/", LOOPBACK)


def test_deadline(http_server) -> None:
    http_server.routes["/slow"] = Reply(200, b"late", delay=5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch(f"{http_server.url}/slow", FetchPolicy(timeout=1, allow_loopback=True))
    assert time.monotonic() - started < 4


def test_a_host_that_never_accepts_fails_at_the_connect_deadline() -> None:
    """A full accept queue leaves the SYN unanswered, as a firewall that drops it does."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = int(listener.getsockname()[1])
    queued = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue; never accepted
    try:
        started = time.monotonic()
        policy = FetchPolicy(timeout=10, connect_timeout=0.5, allow_loopback=True)
        with pytest.raises(FetchError, match="could not connect within 0.5 s"):
            fetch(f"http://127.0.0.1:{port}/", policy)
        assert time.monotonic() - started < 3, "the overall deadline (10 s) was waited for"
        with pytest.raises(FetchError, match="timed out after 0.5 s"):  # the overall deadline is the shorter
            fetch(f"http://127.0.0.1:{port}/", FetchPolicy(timeout=0.5, connect_timeout=5, allow_loopback=True))
    finally:
        queued.close()
        listener.close()


class drip_server:  # noqa: N801 - a context manager that reads like a function
    """A raw listener that answers one request with `fast` at once, then `drip` `piece` bytes at a time."""

    def __init__(self, fast: bytes, drip: bytes, *, pause: float, piece: int = 1) -> None:
        self.fast, self.drip, self.pause, self.piece = fast, drip, pause, piece
        self.listener = socket.create_server(("127.0.0.1", 0))

    def __enter__(self) -> int:
        threading.Thread(target=self._serve, daemon=True).start()
        return int(self.listener.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.recv(65536)
            conn.sendall(self.fast)
            for start in range(0, len(self.drip), self.piece):
                conn.sendall(self.drip[start : start + self.piece])
                time.sleep(self.pause)
        except OSError:
            pass


@pytest.mark.parametrize(
    "fast,drip",
    [
        (b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"a" * 1000),  # headers that take forever
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"z" * 1000),  # a body that takes forever
    ],
    ids=["headers", "body"],
)
def test_a_slow_drip_cannot_hold_a_fetch_past_the_deadline(fast: bytes, drip: bytes) -> None:
    """Each byte arrives well within any per-read timeout; only an overall deadline stops it."""
    with drip_server(fast, drip, pause=0.05) as port:
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetch(f"http://127.0.0.1:{port}/", FetchPolicy(timeout=1.5, max_bytes=10**6, allow_loopback=True))
        assert time.monotonic() - started < 4


def test_the_loopback_switch_is_off_by_default_and_refused_in_production(tmp_path) -> None:
    from pydantic import ValidationError

    from api.context import AppContext
    from storage.settings import load_settings

    context = AppContext.build(load_settings(data_dir=tmp_path))
    assert context.fetch_policy.allow_loopback is False
    context.close()
    with pytest.raises(ValidationError, match="INPAINT_ALLOW_LOOPBACK_URLS must be off in production"):
        load_settings(data_dir=tmp_path, environment="production", secret_key="s" * 32, allow_loopback_urls=True)
