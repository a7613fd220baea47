"""Mobile money rules, pure (no I/O): the payment state machine, pass stacking and the
provisional-access bound. ``billing.payments`` applies them to PostgreSQL.

A payment (one request-to-pay) is ``pending`` until the provider reports it
``successful`` or ``failed``, or until it ``expired`` (no answer within
``KUSH_MOBILE_MONEY_EXPIRE_MINUTES``). Reports arrive twice (callback and polling), late
and out of order, so the status only moves forward: a ``pending`` report never undoes
a final status, a repeated report changes nothing, and ``failed`` never overwrites
``successful``. The one move out of a final status is ``expired`` -> ``successful``:
the provider confirmed after we stopped waiting, the viewer's money was taken, so the
product is delivered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

PaymentStatus = Literal["pending", "successful", "failed", "expired"]
Reported = Literal["pending", "successful", "failed"]
FINAL: frozenset[str] = frozenset({"successful", "failed", "expired"})
#: at most one provisional grant per account in this window
PROVISIONAL_WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What the provider says of one payment (callback or status query)."""

    status: Reported
    reason: str | None = None
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """Something mobile money sells: a plan for a month or a pass for days."""

    id: str
    name: str
    kind: Literal["plan", "pass"]
    plan: str
    period_days: int
    amount_ugx: int


def advance(current: str, reported: str) -> PaymentStatus | None:
    """The status after ``reported`` arrives for a payment in ``current``, or None when
    the report changes nothing (a duplicate, a late ``pending``, anything after a final
    status except the late success of an expired payment)."""
    if reported == current:
        return None
    if current == "pending" and reported in ("successful", "failed"):
        return "successful" if reported == "successful" else "failed"
    if current == "expired" and reported == "successful":
        return "successful"
    return None


def stack(paid_ends: Iterable[datetime], *, now: datetime, days: int) -> tuple[datetime, datetime]:
    """The period a new purchase of ``days`` covers: it starts when the last paid period
    still running ends (``paid_ends``: their ends), or now."""
    start = max([now, *paid_ends])
    return start, start + timedelta(days=days)


def provisional_allowed(last_grant: datetime | None, *, now: datetime) -> bool:
    """Whether a new provisional grant is allowed: none in the past 24 hours."""
    return last_grant is None or now - last_grant >= PROVISIONAL_WINDOW


def describe(status: str, product: str, provisional_until: datetime | None) -> str:
    """One sentence for the viewer about a payment."""
    if status == "pending":
        wait = "Approve the payment on your phone (check for the USSD prompt)."
        if provisional_until is not None:
            at = provisional_until.strftime("%H:%M UTC")
            return f"{wait} You can watch with {product} until {at} while it is confirmed."
        return f"{wait} {product} starts as soon as it is confirmed."
    if status == "successful":
        return f"Paid: {product} is yours."
    if status == "failed":
        return "The payment was declined or failed; nothing was charged."
    return "The payment was not approved in time; nothing was charged."
