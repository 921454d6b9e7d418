"""The one way this service talks to a URL a user gave it (input images, webhooks).

- http and https only;
- the host name is resolved once, every address must be public, and the request
  then connects to that very address (no second lookup for DNS rebinding to use);
- redirects are never followed: a 3xx is returned to the caller as it is;
- an overall deadline and a cap on the bytes read while streaming.

`allow_loopback` admits 127.0.0.0/8 and ::1 only, for tests and local use; it is
off unless configured, and Settings refuses it in production.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field

import httpx

from storage.errors import InpaintError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that ipaddress.is_global calls global but that must never be reached,
# plus the obvious ones, listed so the intent is readable.
BLOCKED_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
        "2001::/32", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
]
LOOPBACK_NETWORKS = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


class FetchError(InpaintError):
    """The URL could not be fetched; the message is safe to show and names no internal address."""


@dataclass(frozen=True)
class FetchPolicy:
    timeout: float = 15.0
    max_bytes: int = 16 * 1024 * 1024
    allow_loopback: bool = False


@dataclass
class FetchResult:
    status_code: int
    headers: httpx.Headers
    body: bytes = b""
    elapsed: float = 0.0
    address: str = field(default="", repr=False)


def is_public(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return False
    if allow_loopback and any(ip in net for net in LOOPBACK_NETWORKS):
        return True
    if any(ip.version == net.version and ip in net for net in BLOCKED_NETWORKS):
        return False
    return ip.is_global and not ip.is_multicast


def resolve_public(host: str, port: int, *, allow_loopback: bool) -> list[IPAddress]:
    """Resolve `host` once; every address must be public, or FetchError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"host {host!r} could not be resolved") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses or not all(is_public(a, allow_loopback=allow_loopback) for a in addresses):
        raise FetchError(f"host {host!r} resolves to an address that is not public")
    return addresses


def parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError("is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError("must be an http or https URL")
    return parsed


def fetch(
    url: str,
    policy: FetchPolicy,
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> FetchResult:
    """Send one request to a user-supplied URL under `policy`. Never follows redirects."""
    parsed = parse_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    started = time.monotonic()
    address = resolve_public(parsed.host, port, allow_loopback=policy.allow_loopback)[0]
    pinned = parsed.copy_with(host=str(address))
    request_headers = {"Host": parsed.netloc.decode("ascii"), "User-Agent": "inpaint-queue/0.1"}
    request_headers.update(headers or {})
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    timeout = httpx.Timeout(policy.timeout, read=min(policy.timeout, 5.0))
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(method, pinned, content=content, headers=request_headers,
                                           extensions=extensions)
            response = client.send(request, stream=True)
            try:
                body = _read_capped(response, policy, started)
            finally:
                response.close()
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {policy.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"request failed: {type(exc).__name__}") from None
    return FetchResult(response.status_code, response.headers, body, time.monotonic() - started, str(address))


def _read_capped(response: httpx.Response, policy: FetchPolicy, started: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(f"is {declared} bytes, more than the limit of {policy.max_bytes}")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > policy.max_bytes:
            raise FetchError(f"is more than the limit of {policy.max_bytes} bytes")
        if time.monotonic() - started > policy.timeout:
            raise FetchError(f"timed out after {policy.timeout:g} s")
        chunks.append(chunk)
    return b"".join(chunks)
