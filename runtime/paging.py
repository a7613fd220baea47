"""Opaque page cursors for lists ordered newest first by (timestamp, id): the public
catalogue's and the admin service's.

A cursor holds the last row's timestamp in whole microseconds (PostgreSQL's precision)
and its id, so the next page starts exactly after it: a float of epoch seconds cannot
hold microseconds exactly, and a page boundary would then repeat or skip a row.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from runtime.errors import BadRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(after: tuple[datetime, str]) -> str:
    """The cursor of the page after the row ``(timestamp, id)``."""
    micros = (after[0] - EPOCH) // MICROSECOND
    return base64.urlsafe_b64encode(orjson.dumps([micros, after[1]])).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, seconds_too: bool = False) -> tuple[datetime, str]:
    """``(timestamp, id)`` of a cursor; 400 ``invalid_cursor`` for anything else.

    ``seconds_too``: also read float epoch seconds, the cursors an earlier release of
    the public catalogue handed out (players may still hold one)."""
    try:
        ts, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(ts, bool) or not isinstance(ts, int | float if seconds_too else int):
            raise TypeError("not whole microseconds")
        micros = ts if isinstance(ts, int) else round(ts * 1_000_000)
        return EPOCH + micros * MICROSECOND, str(uuid.UUID(row_id))
    except (ValueError, TypeError, OverflowError):
        raise BadRequest("Malformed cursor", code="invalid_cursor") from None


def page_after(cursor: str | None, *, seconds_too: bool = False) -> tuple[datetime, str] | None:
    """Where a page starts: after the cursor's row, or at the top without one."""
    return decode_cursor(cursor, seconds_too=seconds_too) if cursor else None


def next_cursor(after: tuple[datetime, str] | None) -> str | None:
    """The cursor of the next page, or None on the last one."""
    return encode_cursor(after) if after else None
