"""Who the client is: the socket peer, or what trusted proxies say about it.

Headers that name the client (``X-Forwarded-For``, the CDN's country and region headers)
are believed only when the socket peer is one of ``KUSH_TRUSTED_PROXIES`` (a CIDR list):
anyone can send them, and a spoofed country would defeat geo rules, a spoofed address
would defeat rate limits.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN_PEER = "0.0.0.0"  # noqa: S104 - a label for "no peer address", not a bind address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; ``ValueError`` names a bad entry."""
    out: list[Network] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {value!r}") from None
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def peer_is_trusted(request: web.Request, trusted: tuple[str, ...]) -> bool:
    """True when the socket peer is a proxy we run (``KUSH_TRUSTED_PROXIES``)."""
    return bool(trusted) and _is_trusted(request.remote or "", _networks(trusted))


def client_ip(request: web.Request, trusted: tuple[str, ...]) -> str:
    """The client's IP address.

    From a trusted peer, ``X-Forwarded-For`` is read from the right (each proxy appends
    the address it saw) and the first address that is not itself a trusted proxy is the
    client; anything to its left was written by the client and is ignored. From any
    other peer the header is ignored and the socket address is the client.
    """
    peer = request.remote or UNKNOWN_PEER
    if not peer_is_trusted(request, trusted):
        return peer
    networks = _networks(trusted)
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    client = peer
    for hop in reversed([h for h in hops if h]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage: keep the last address a trusted proxy vouched for
        client = hop
        if not _is_trusted(hop, networks):
            break
    return client


def client_scheme(request: web.Request, trusted: tuple[str, ...]) -> str:
    """The scheme the client used: a trusted proxy's ``X-Forwarded-Proto`` (the TLS
    edge in front says ``https``), else the socket's own."""
    if peer_is_trusted(request, trusted):
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in {"http", "https"}:
            return proto
    return request.scheme


def trusted_header(request: web.Request, trusted: tuple[str, ...], name: str) -> str | None:
    """A header set by the CDN or edge (country, region), or None from untrusted peers."""
    if not peer_is_trusted(request, trusted):
        return None
    return request.headers.get(name)
