"""Single byte ranges (RFC 9110 §14): parsing, resolving against a size, headers.

Only one range per request is supported, as aiohttp's ``FileResponse`` does: a
``Range`` header that is not exactly one ``bytes=`` range is answered with 416, the
same for every store.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from origin.errors import RangeNotSatisfiable

__all__ = ["ByteRange", "RangeSpec", "parse_range", "resolve_range", "unsatisfied_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)


class RangeSpec(NamedTuple):
    """A parsed range before the size is known: ``first``-``last`` or a ``suffix``."""

    first: int | None
    last: int | None
    suffix: int | None

    def header(self) -> str:
        """The normalised ``Range`` header value to forward to an origin."""
        if self.suffix is not None:
            return f"bytes=-{self.suffix}"
        return f"bytes={self.first}-{'' if self.last is None else self.last}"


class ByteRange(NamedTuple):
    """A satisfiable range: ``start`` to ``end`` inclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value of a 206 answer (RFC 9110 §14.4)."""
        return f"bytes {self.start}-{self.end}/{size}"


def unsatisfied_range(size: int) -> str:
    """The ``Content-Range`` value of a 416 answer (RFC 9110 §15.5.17)."""
    return f"bytes */{size}"


def parse_range(value: str) -> RangeSpec:
    """Parse one ``bytes=`` range; ``ValueError`` if it is not exactly one valid range."""
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        raise ValueError("not a single byte range")
    first_s, last_s = match.groups()
    if not first_s:
        if not last_s:
            raise ValueError("empty range")
        return RangeSpec(first=None, last=None, suffix=int(last_s))
    first = int(first_s)
    last = int(last_s) if last_s else None
    if last is not None and last < first:
        raise ValueError("range ends before it starts")
    return RangeSpec(first=first, last=last, suffix=None)


def resolve_range(value: str, size: int) -> ByteRange:
    """Resolve a ``Range`` header against an object size; ``RangeNotSatisfiable`` if not."""
    try:
        spec = parse_range(value)
    except ValueError as err:
        raise RangeNotSatisfiable(size) from err
    if spec.suffix is not None:
        # RFC 9110 §14.1.2: a zero suffix-length is unsatisfiable.
        if spec.suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - spec.suffix), size - 1)
    assert spec.first is not None
    if spec.first >= size:
        raise RangeNotSatisfiable(size)
    last = size - 1 if spec.last is None else min(spec.last, size - 1)
    return ByteRange(spec.first, last)
