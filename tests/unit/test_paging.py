"""Page cursors (catalogue and admin lists): exact to the microsecond, refused when
forged; the catalogue still reads an earlier release's float-seconds cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from runtime.errors import BadRequest
from runtime.paging import decode_cursor, encode_cursor, next_cursor, page_after


def test_round_trip_is_exact_to_the_microsecond() -> None:
    row_id = str(uuid.uuid4())
    for at in (
        datetime(2026, 11, 30, 4, 36, 10, 123457, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
    ):
        assert decode_cursor(encode_cursor((at, row_id))) == (at, row_id)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'[1.5, "x"]',
        b'[true, "00000000-0000-0000-0000-000000000000"]',
        b'[1, "not-a-uuid"]',
        b"{}",
        b'[99999999999999999999, "00000000-0000-0000-0000-000000000000"]',
    ],
)
def test_forged_cursors_are_400(raw: bytes) -> None:
    cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(BadRequest) as caught:
        decode_cursor(cursor)
    assert caught.value.code == "invalid_cursor"


def test_garbage_is_400() -> None:
    with pytest.raises(BadRequest):
        decode_cursor("%%%")


def test_float_seconds_only_where_asked() -> None:
    row_id = "00000000-0000-0000-0000-000000000000"
    cursor = base64.urlsafe_b64encode(f'[1764477370.25, "{row_id}"]'.encode()).decode()
    assert decode_cursor(cursor, seconds_too=True) == (
        datetime(2025, 11, 30, 4, 36, 10, 250000, tzinfo=UTC),
        row_id,
    )
    with pytest.raises(BadRequest):
        decode_cursor(cursor)


def test_no_cursor_is_the_first_page_and_no_next_is_the_last() -> None:
    assert page_after(None) is None
    assert page_after("") is None
    assert next_cursor(None) is None
