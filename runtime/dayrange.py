"""A range of UTC days in a query string, ``?from=YYYY-MM-DD&to=YYYY-MM-DD``: the one
model the admin reports and ``/v1/me/usage`` parse, and the check that turns it into two
dates. Each endpoint keeps its own default for ``from`` and its own limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from pydantic import Field

from runtime.api import DateStr, InvalidRequest, QueryModel, ReplyModel

#: The longest range a report covers, in days (``to - from``).
MAX_DAYS = 366
RANGE_MESSAGE = "The range must be at most a year, from <= to"


def thirty_days_before(last: date) -> date:
    """The reports' default ``from``: ``to`` - 30."""
    return last - timedelta(days=30)


def month_start(last: date) -> date:
    """``/v1/me/usage``'s default ``from``: the first day of ``to``'s month."""
    return last.replace(day=1)


def utc_today() -> date:
    return datetime.now(UTC).date()


def day_range(
    first: date | None,
    last: date | None,
    *,
    today: date,
    default_from: Callable[[date], date] = thirty_days_before,
    max_days: int = MAX_DAYS,
) -> tuple[date, date]:
    """The days a query covers: ``to`` defaults to ``today``, ``from`` to
    ``default_from(to)``; 422 ``invalid_request`` (on ``from``) when reversed or longer
    than ``max_days``."""
    end = last or today
    start = first or default_from(end)
    if start > end or (end - start).days > max_days:
        raise InvalidRequest(
            RANGE_MESSAGE, details={"fields": [{"path": "from", "message": RANGE_MESSAGE}]}
        )
    return start, end


class DayRangeQuery(QueryModel):
    """The days of the report (UTC), at most a year."""

    from_: date | None = Field(
        default=None, alias="from", description="First day, YYYY-MM-DD (default: `to` - 30)"
    )
    to: date | None = Field(default=None, description="Last day, YYYY-MM-DD (default: today)")

    def days(
        self,
        *,
        today: date | None = None,
        default_from: Callable[[date], date] = thirty_days_before,
        max_days: int = MAX_DAYS,
    ) -> tuple[date, date]:
        """:func:`day_range` of this query; ``today`` defaults to today in UTC."""
        return day_range(
            self.from_,
            self.to,
            today=today or utc_today(),
            default_from=default_from,
            max_days=max_days,
        )


class DayRangeReply(ReplyModel):
    """The first fields of a reply about a range of days: the days it covers."""

    from_: DateStr = Field(alias="from")
    to: DateStr
