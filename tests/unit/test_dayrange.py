"""The shared date-range query check (``runtime.dayrange``)."""

from __future__ import annotations

from datetime import date

import pytest

from runtime.api import InvalidRequest
from runtime.dayrange import DayRangeQuery, day_range, month_start

TODAY = date(2026, 11, 30)


def test_the_reports_default_is_the_30_days_up_to_to() -> None:
    assert day_range(None, None, today=TODAY) == (date(2026, 10, 31), TODAY)
    assert day_range(None, date(2026, 3, 1), today=TODAY) == (date(2026, 1, 30), date(2026, 3, 1))


def test_an_endpoint_keeps_its_own_default_from() -> None:
    assert day_range(None, None, today=TODAY, default_from=month_start) == (
        date(2026, 11, 1),
        TODAY,
    )


def test_the_limit_is_inclusive_and_a_parameter() -> None:
    assert day_range(date(2025, 1, 1), date(2026, 1, 2), today=TODAY) == (
        date(2025, 1, 1),
        date(2026, 1, 2),
    )
    with pytest.raises(InvalidRequest):
        day_range(date(2025, 1, 1), date(2026, 1, 3), today=TODAY)
    with pytest.raises(InvalidRequest):
        day_range(date(2026, 1, 1), date(2026, 1, 9), today=TODAY, max_days=7)


def test_a_reversed_range_is_422_on_from() -> None:
    with pytest.raises(InvalidRequest) as err:
        day_range(date(2026, 2, 1), date(2026, 1, 1), today=TODAY)
    assert err.value.status == 422
    assert err.value.details == {
        "fields": [{"path": "from", "message": "The range must be at most a year, from <= to"}]
    }


def test_the_query_model_reads_from_and_to() -> None:
    query = DayRangeQuery.model_validate({"from": "2026-11-01", "to": "2026-11-02"})
    assert query.days(today=TODAY) == (date(2026, 11, 1), date(2026, 11, 2))
    assert DayRangeQuery.model_validate({}).days(today=TODAY) == (date(2026, 10, 31), TODAY)
