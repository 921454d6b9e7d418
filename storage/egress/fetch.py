"""The one way this service talks to a URL a user gave it (input images, webhooks, checkpoint URLs).

- http and https only, and no user name or password in the URL;
- the host is resolved once and every address must be public (storage.egress.addresses);
  the connection then goes to that very address: the network backend below
  ignores the host name it is handed and dials the pinned address, while the
  request keeps the URL's own name for the `Host` header, TLS SNI and the
  certificate check;
- redirects are never followed: a 3xx is returned to the caller as it is (a checkpoint
  download follows them itself, each hop a new request under these rules:
  storage.egress.checkpoints);
- one overall deadline covers resolving, connecting, TLS, sending and every read,
  so a server that drips a byte at a time cannot hold a fetch past it; an optional
  shorter `connect_timeout` bounds the TCP connect alone, so a host that never
  accepts fails fast;
- the body is read as a stream and refused once it passes the byte cap; nothing
  is decompressed (the request asks for the identity encoding).

`policy.allow_loopback` admits 127.0.0.0/8 and ::1 only, for tests and local use.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from storage.egress.addresses import FetchError, IPAddress, is_public, normalize_host, resolve_public

__all__ = ["FetchError", "FetchPolicy", "FetchResult", "check_url", "exchange", "fetch", "is_public"]

USER_AGENT = "inpaint-queue/0.1"
WRITE_SLICE = 64 * 1024
_CALLER_MAY_NOT_SET = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class FetchPolicy:
    timeout: float = 15.0
    max_bytes: int = 16 * 1024 * 1024
    allow_loopback: bool = False
    connect_timeout: float | None = None
    """At most this long for the TCP connect, within `timeout`; None: only `timeout` applies."""


@dataclass
class FetchResult:
    status_code: int
    headers: httpx.Headers
    body: bytes = b""
    elapsed: float = 0.0
    address: str = field(default="", repr=False)


@dataclass(frozen=True)
class Target:
    """A parsed URL: what to resolve, what to put in `Host`, and what to request."""

    scheme: str
    host: str
    port: int
    host_header: str
    path: bytes


class Deadline:
    """Seconds left until a fixed instant; every network call gets at most that long."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.at = self.started + seconds

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

    def left(self, cap: float | None, timeout_error: type[Exception]) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise timeout_error("the overall deadline has passed")
        return remaining if cap is None else min(cap, remaining)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read, write and handshake ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_SLICE):
            piece = buffer[start : start + WRITE_SLICE]
            self._inner.write(piece, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.SyncBackend):
    """Dials `address` whatever host it is asked for, and wraps the stream in the deadline.

    The TCP connect waits at most `connect_timeout` (when given) of what the deadline leaves;
    `connect_ran_out` says that a connect timed out on that limit rather than on the deadline."""

    def __init__(self, address: IPAddress, deadline: Deadline, connect_timeout: float | None = None) -> None:
        self._address, self._deadline, self._connect_timeout = address, deadline, connect_timeout
        self.connect_ran_out = False

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        capped = self._connect_timeout is not None and self._connect_timeout < left
        try:
            stream = super().connect_tcp(
                str(self._address), port, self._connect_timeout if capped else left, local_address, socket_options
            )
        except httpcore.ConnectTimeout:
            self.connect_ran_out = capped
            raise
        return DeadlineStream(stream, self._deadline)


def parse_url(url: str) -> Target:
    """Parse and check a user-supplied URL. Raises FetchError with a message safe to show."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError("is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError("must be an http or https URL")
    if parsed.userinfo:
        raise FetchError("must not carry a user name or password")
    host = normalize_host(parsed.raw_host.decode("ascii"))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if parsed.port is None else f"{shown}:{parsed.port}"
    return Target(parsed.scheme, host, port, host_header, parsed.raw_path or b"/")


def request_headers(target: Target, headers: dict[str, str] | None, content: bytes | None) -> list[tuple[str, str]]:
    """Ours (Host, length) cannot be overridden; the caller's come after them."""
    own = [
        ("Host", target.host_header),
        ("User-Agent", USER_AGENT),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
    ]
    if content is not None:
        own.append(("Content-Length", str(len(content))))
    given = [(k, v) for k, v in (headers or {}).items() if k.lower() not in _CALLER_MAY_NOT_SET]
    names = {k.lower() for k, _ in given}
    return [(k, v) for k, v in own if k.lower() not in names] + given


def fetch(
    url: str,
    policy: FetchPolicy,
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> FetchResult:
    """Send one request to a user-supplied URL under `policy`. Never follows redirects.

    Raises FetchError (message safe to show: never the resolved address) for a URL
    that is refused, a host that cannot be reached, the deadline or the byte cap.
    """
    with exchange(url, policy, method=method, content=content, headers=headers) as sent:
        body = read_capped(sent.response, policy.max_bytes)
    elapsed = time.monotonic() - sent.deadline.started
    return FetchResult(sent.response.status, httpx.Headers(sent.response.headers), body, elapsed, str(sent.address))


@dataclass(frozen=True)
class Exchange:
    """A request sent by `exchange`: its response (the body not read yet), the address, the deadline."""

    response: httpcore.Response
    address: IPAddress
    deadline: Deadline


@contextmanager
def exchange(
    url: str,
    policy: FetchPolicy,
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[Exchange]:
    """Send one request under `policy` (the module docstring's rules) and hold its response open for the
    block, which reads the body as it likes, within the same deadline. A network failure, in the request
    or in the block's reads, becomes a FetchError."""
    deadline = Deadline(policy.timeout)
    target = parse_url(url)
    address = resolve_public(
        target.host, target.port, allow_loopback=policy.allow_loopback, timeout=deadline.remaining()
    )
    core_url = httpcore.URL(scheme=target.scheme, host=target.host, port=target.port, target=target.path)
    ssl_context = httpx.create_ssl_context(trust_env=False)
    sni = {"sni_hostname": target.host} if target.scheme == "https" else {}
    backend = PinnedBackend(address, deadline, policy.connect_timeout)
    extensions = {"timeout": _timeouts(policy.timeout), **sni}
    try:
        with (
            httpcore.ConnectionPool(
                ssl_context=ssl_context, network_backend=backend, max_connections=1, retries=0
            ) as pool,
            pool.stream(
                method,
                core_url,
                headers=request_headers(target, headers, content),
                content=content,
                extensions=extensions,
            ) as response,
        ):
            yield Exchange(response, address, deadline)
    except httpcore.ConnectTimeout:
        if backend.connect_ran_out:
            raise FetchError(f"could not connect within {policy.connect_timeout:g} s") from None
        raise FetchError(_timed_out(deadline)) from None
    except httpcore.TimeoutException:
        raise FetchError(_timed_out(deadline)) from None
    except httpcore.ConnectError:
        raise FetchError("could not connect to the host") from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise FetchError(f"request failed: {type(exc).__name__}") from None


def check_url(url: str, *, allow_loopback: bool, timeout: float) -> None:
    """What `fetch` checks before it connects, without connecting: the URL's form, and that its host
    resolves (within `timeout` seconds) to public addresses only. Raises FetchError."""
    target = parse_url(url)
    resolve_public(target.host, target.port, allow_loopback=allow_loopback, timeout=timeout)


def read_capped(response: httpcore.Response, max_bytes: int) -> bytes:
    """The body, refused as soon as it is (or says it will be) longer than `max_bytes`."""
    declared = httpx.Headers(response.headers).get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"is {declared} bytes, more than the limit of {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_stream():
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"is more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _timeouts(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


def _timed_out(deadline: Deadline) -> str:
    return f"timed out after {deadline.seconds:g} s"
