"""Client addresses behind a known number of trusted proxies."""

from __future__ import annotations

from aiohttp import web


def client_ip(request: web.Request, trusted_hops: int) -> str:
    """The client's IP: the socket peer, or the address ``trusted_hops`` proxies back in
    ``X-Forwarded-For`` (only entries appended by proxies we run are trusted)."""
    peer = request.remote or "0.0.0.0"  # noqa: S104 - a label, not a bind address
    if trusted_hops <= 0:
        return peer
    forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [p for p in forwarded if p]
    if len(forwarded) >= trusted_hops:
        return forwarded[-trusted_hops]
    return peer
