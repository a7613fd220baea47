"""``OriginStats``: counters of the S3 store's origin traffic, shared by its parts."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OriginStats"]


@dataclass(slots=True)
class OriginStats:
    """Counters of origin traffic (exported as metrics by the gateway)."""

    origin_requests: int = 0  # HTTP requests sent to the origin, retries included
    origin_gets: int = 0  # of which GETs
    collapsed: int = 0  # reads that joined another request's in-flight fetch
    unshared: int = 0  # full reads streamed alone because the shared-fetch buffer was full
    retries: int = 0  # second attempts after a timeout, connection error or 5xx
    failures: int = 0  # operations that failed after their retry (counted by the breaker)
    rejected: int = 0  # operations refused by the open circuit breaker
    aborted_streams: int = 0  # client responses cut off by an origin failure mid-body
    presigns: int = 0  # URLs signed (most requests reuse a cached one)
    bytes_read: int = 0  # body bytes received from the origin
