"""Domain errors of the origin stores.

Vendor exceptions (botocore, aiohttp client errors) are translated into these at the
boundary of this package (``raise ... from err``), so callers map one small family of
errors to HTTP statuses.
"""

from __future__ import annotations

__all__ = [
    "InvalidObjectKey",
    "ObjectNotFound",
    "ObjectTooLarge",
    "OriginError",
    "OriginUnavailable",
    "RangeNotSatisfiable",
]


class OriginError(Exception):
    """Base class: the origin could not give what was asked (502 unless a subclass says)."""


class ObjectNotFound(OriginError):
    """No object under this key (404)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key}")
        self.key = key


class InvalidObjectKey(OriginError):
    """A key or key component is not allowed (treat as 404: never reveal why)."""

    def __init__(self, value: str, reason: str) -> None:
        shown = value if len(value) <= 64 else value[:61] + "..."
        super().__init__(f"invalid object key {shown!r}: {reason}")
        self.value = value
        self.reason = reason


class ObjectTooLarge(OriginError):
    """The object is larger than the caller accepts (e.g. a playlist over its limit)."""

    def __init__(self, key: str, size: int, max_size: int) -> None:
        super().__init__(f"object {key} is {size} bytes, over the limit of {max_size}")
        self.key = key
        self.size = size
        self.max_size = max_size


class OriginUnavailable(OriginError):
    """The origin is down, slow or refused service (503 with ``Retry-After``)."""

    def __init__(self, retry_after: int, message: str = "origin unavailable") -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class RangeNotSatisfiable(OriginError):
    """A byte range outside the object (416 with ``Content-Range: bytes */size``)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (size {size})")
        self.size = size
