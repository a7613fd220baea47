"""Opaque page cursors for lists ordered newest first by (timestamp, id).

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


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(timestamp, id)`` of a cursor; 400 ``invalid_cursor`` for anything else."""
    try:
        micros, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(micros, int) or isinstance(micros, bool):
            raise TypeError("not whole microseconds")
        return EPOCH + micros * MICROSECOND, str(uuid.UUID(row_id))
    except (ValueError, TypeError, OverflowError):
        raise BadRequest("Malformed cursor", code="invalid_cursor") from None
