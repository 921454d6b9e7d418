"""Which hosts a user-supplied URL may reach: public addresses only, spelled plainly.

The rules, applied before any connection is made:

- the host is resolved once (`resolve_public`), within the fetch's deadline, and
  *every* address it resolves to must be public; the caller then connects to
  that address and never looks the name up again (DNS rebinding gets nowhere);
- "public" excludes loopback, private, link-local (169.254.169.254 among them),
  carrier-grade NAT 100.64.0.0/10, multicast, reserved and documentation ranges,
  fc00::/7, fe80::/10, and IPv6 forms that carry an IPv4 address (IPv4-mapped,
  IPv4-compatible, NAT64, 6to4, Teredo), which `ipaddress.is_global` alone lets by;
- an IPv4 address must be written as four decimal numbers: 2130706433, 0x7f000001,
  0177.0.0.1 and 127.1 are refused, whatever they would resolve to;
- one trailing dot is dropped (`localhost.` is `localhost`).

`allow_loopback` admits 127.0.0.0/8 and ::1 and nothing else: for tests and local
use, off unless configured, refused by Settings in production.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time

from storage.errors import InpaintError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/96",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
LOOPBACK_NETWORKS = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_DECIMAL = re.compile(rf"^{_OCTET}(\.{_OCTET}){{3}}$")


class FetchError(InpaintError):
    """The URL could not be fetched. The message is safe to show: it never names the host or an address
    (the host as parsed may differ from what the user wrote, and the resolved address is internal)."""


def is_public(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    if allow_loopback and any(ip.version == net.version and ip in net for net in LOOPBACK_NETWORKS):
        return True
    if any(ip.version == net.version and ip in net for net in BLOCKED_NETWORKS):
        return False
    return ip.is_global and not ip.is_multicast


def normalize_host(host: str) -> str:
    """The host to resolve: lower case, one trailing dot dropped, IPv4 only as dotted decimal."""
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or name.endswith("."):
        raise FetchError("the host is not a valid host name")
    if ":" in name:  # an IPv6 literal: ipaddress has already parsed it strictly
        return name
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]) and not _DOTTED_DECIMAL.match(name):
        raise FetchError("the host is neither a host name nor a dotted-decimal IPv4 address")
    return name


def resolve_public(host: str, port: int, *, allow_loopback: bool, timeout: float) -> IPAddress:
    """Resolve `host` once, within `timeout` seconds; every address must be public. Returns the first."""
    infos = _getaddrinfo(host, port, timeout)
    try:
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    except ValueError:
        raise FetchError("the host could not be resolved") from None
    if not addresses or not all(is_public(a, allow_loopback=allow_loopback) for a in addresses):
        raise FetchError("the host resolves to an address that is not public")
    return addresses[0]


def _getaddrinfo(host: str, port: int, timeout: float) -> list[tuple]:  # type: ignore[type-arg]
    """socket.getaddrinfo has no timeout of its own: run it aside and stop waiting at the deadline."""
    outcome: dict[str, object] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            outcome["failed"] = True

    worker = threading.Thread(target=lookup, name="resolve", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(max(timeout, 0.0))
    if worker.is_alive():
        raise FetchError(f"timed out after {time.monotonic() - started:.1f} s resolving the host")
    if "infos" not in outcome:
        raise FetchError("the host could not be resolved")
    return outcome["infos"]  # type: ignore[return-value]
