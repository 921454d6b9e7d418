"""Fetching user-supplied URLs: public addresses only, no redirects, a deadline and a byte cap."""

from __future__ import annotations

import ipaddress
import time

import pytest

from storage.safe_fetch import FetchError, FetchPolicy, fetch, is_public
from tests.support.http_server import Reply

LOOPBACK = FetchPolicy(timeout=3, max_bytes=1000, allow_loopback=True)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "::1", "fc00::1", "fe80::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::",
])
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_loopback_is_refused_unless_switched_on(http_server) -> None:
    http_server.routes["/x"] = Reply(200, b"hello")
    with pytest.raises(FetchError, match="not public"):
        fetch(f"{http_server.url}/x", FetchPolicy())
    assert http_server.received == [], "a refused URL was connected to"
    assert fetch(f"{http_server.url}/x", LOOPBACK).body == b"hello"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x", "http://"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(FetchError):
        fetch(url, LOOPBACK)


def test_redirects_are_not_followed(http_server) -> None:
    http_server.routes["/r"] = Reply(302, b"", {"location": "/x"})
    http_server.routes["/x"] = Reply(200, b"target")
    assert fetch(f"{http_server.url}/r", LOOPBACK).status_code == 302
    assert [r.path for r in http_server.received] == ["/r"]


def test_byte_cap(http_server) -> None:
    http_server.routes["/big"] = Reply(200, b"x" * 5000)
    with pytest.raises(FetchError, match="limit of 1000"):
        fetch(f"{http_server.url}/big", LOOPBACK)


def test_deadline(http_server) -> None:
    http_server.routes["/slow"] = Reply(200, b"late", delay=5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch(f"{http_server.url}/slow", FetchPolicy(timeout=1, allow_loopback=True))
    assert time.monotonic() - started < 4
