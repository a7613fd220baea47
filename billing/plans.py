"""The effective plan: one pure function every service uses.

A user has at most one subscription row per provider (``stripe``; ``manual``, ``admin``
and ``demo`` are grants by hand). :func:`effective_plan` turns those rows into the plan
that playback enforces:

- ``active`` and ``trialing`` rows give their plan (a grant by hand until its
  ``ends_at``, if any);
- ``past_due`` keeps the plan for the grace period (``KUSH_BILLING_GRACE_HOURS``, 72 h by
  default) counted from ``past_due_since``, then gives nothing;
- ``canceled``, ``unpaid``, ``incomplete``, ``incomplete_expired`` and ``paused`` give
  nothing;
- a period bought with mobile money (``mobile_money``: a pass, or a plan for 30 days)
  gives its plan from ``starts_at`` (passes stack, so it may start later) to ``ends_at``;
  provisional access while a mobile money payment is pending (``provisional``) gives
  the product's plan until ``ends_at``;
- among the rows that give a plan, the highest ranked wins; none gives ``free``.

The answer also says when it changes by time alone (``recheck_at``: the end of a grace
period, a grant, a pass or provisional access, or the start of a stacked pass), so a
sweep can enforce it then, and what happens next, for the viewer's billing page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

FREE = "free"
PAID_PLANS = ("basic", "premium")
STATUSES = (
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
)
#: statuses that entitle (past_due only within the grace period)
LIVE_STATUSES = frozenset({"active", "trialing", "past_due"})
#: a Stripe subscription in one of these never comes back
TERMINAL_STATUSES = frozenset({"canceled", "incomplete_expired"})
DEFAULT_GRACE = timedelta(hours=72)

NextKind = Literal[
    "none", "renews", "ends", "grace_ends", "grant_ends", "pass_ends", "provisional_ends"
]
#: rows from mobile money: a paid period, and provisional access while a payment is pending
MOBILE_MONEY = "mobile_money"
PROVISIONAL = "provisional"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRow:
    """What the effective plan depends on, of one subscription row."""

    id: str
    provider: str
    plan: str
    rank: int
    status: str
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    past_due_since: datetime | None = None
    ends_at: datetime | None = None
    updated_at: datetime | None = None
    starts_at: datetime | None = None

    @property
    def by_hand(self) -> bool:
        """A grant by an admin (or the demo seed), not a paid subscription."""
        return self.provider != "stripe"


@dataclass(frozen=True, slots=True, kw_only=True)
class Next:
    """What happens next to the plan, and when."""

    kind: NextKind
    at: datetime | None = None
    plan: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePlan:
    """The plan in force, the row that gives it (``None``: free by default), when it
    changes by time alone, and what happens next."""

    plan: str
    source: SubscriptionRow | None
    recheck_at: datetime | None
    next: Next

    @property
    def status(self) -> str | None:
        return self.source.status if self.source is not None else None

    @property
    def grace_until(self) -> datetime | None:
        """End of the grace period when the plan is kept despite a failed payment."""
        if self.source is not None and self.source.status == "past_due":
            return self.recheck_at
        return None


def _gives_until(
    row: SubscriptionRow, now: datetime, grace: timedelta
) -> tuple[bool, datetime | None]:
    """Whether the row gives its plan now, and until when by time alone (None: no end)."""
    if row.starts_at is not None and row.starts_at > now:
        return False, None
    if row.status in ("active", "trialing"):
        if row.by_hand and row.ends_at is not None:
            return row.ends_at > now, row.ends_at
        return True, None
    if row.status == "past_due":
        since = row.past_due_since or row.updated_at or now
        end = since + grace
        return end > now, end
    return False, None


def effective_plan(
    rows: Iterable[SubscriptionRow], *, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> EffectivePlan:
    """The plan ``rows`` give at ``now`` (see the module docstring for the rules)."""
    rows = list(rows)
    giving: list[tuple[SubscriptionRow, datetime | None]] = []
    starts: list[datetime] = []  # stacked periods yet to start change the plan then
    for row in rows:
        ok, until = _gives_until(row, now, grace)
        if ok:
            giving.append((row, until))
        elif row.starts_at is not None and row.starts_at > now and row.status == "active":
            starts.append(row.starts_at)
    if not giving:
        recheck_free = min(starts) if starts else None
        return EffectivePlan(
            plan=FREE, source=None, recheck_at=recheck_free, next=Next(kind="none")
        )
    # highest rank first; on a tie the row that lasts longer (no end beats any end)
    giving.sort(key=lambda g: (g[0].rank, g[1] is None, g[1] or now), reverse=True)
    best, until = giving[0]
    # the plan changes by time when the best row runs out: the next best takes over then
    ends = [u for _, u in giving if u is not None] + starts
    recheck = min(ends) if ends else None
    if best.provider == MOBILE_MONEY and until is not None:
        until = _paid_through(rows, best.plan, until)
    return EffectivePlan(plan=best.plan, source=best, recheck_at=recheck, next=_next(best, until))


def _paid_through(rows: list[SubscriptionRow], plan: str, until: datetime) -> datetime:
    """The end of a run of stacked mobile money periods of ``plan`` that continue one
    another from ``until`` on (what the viewer has paid for without a gap)."""
    stacked = sorted(
        (r for r in rows if r.provider == MOBILE_MONEY and r.plan == plan and r.ends_at),
        key=lambda r: r.starts_at or until,
    )
    for row in stacked:
        if row.ends_at is not None and (row.starts_at or until) <= until < row.ends_at:
            until = row.ends_at
    return until


def _next(row: SubscriptionRow, until: datetime | None) -> Next:
    if row.status == "past_due":
        return Next(kind="grace_ends", at=until, plan=FREE)
    if row.provider == MOBILE_MONEY:
        return Next(kind="pass_ends", at=until, plan=FREE)
    if row.provider == PROVISIONAL:
        return Next(kind="provisional_ends", at=until, plan=FREE)
    if row.by_hand:
        return Next(kind="grant_ends", at=until, plan=FREE) if until else Next(kind="none")
    if row.cancel_at_period_end:
        return Next(kind="ends", at=row.current_period_end, plan=FREE)
    if row.current_period_end is not None:
        return Next(kind="renews", at=row.current_period_end, plan=row.plan)
    return Next(kind="none")


def describe_next(effective: EffectivePlan, names: dict[str, str] | None = None) -> str:
    """One sentence for the viewer: what happens next to their plan."""
    names = names or {}

    def name(plan: str | None) -> str:
        return names.get(plan or FREE, (plan or FREE).capitalize())

    def day(at: datetime | None) -> str:
        return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "soon"

    nxt = effective.next
    current = name(effective.plan)
    if nxt.kind == "renews":
        return f"{current} renews on {day(nxt.at)}."
    if nxt.kind == "ends":
        return f"{current} ends on {day(nxt.at)}; then you are on {name(FREE)}."
    if nxt.kind == "grace_ends":
        return (
            f"Your last payment failed. {current} stays until {day(nxt.at)}; update your "
            f"payment method before then or you move to {name(FREE)}."
        )
    if nxt.kind == "pass_ends":
        return f"{current} is paid until {day(nxt.at)}; then you are on {name(FREE)}."
    if nxt.kind == "provisional_ends":
        return (
            f"{current} is yours until {day(nxt.at)} while your mobile money payment is "
            "confirmed; approve it on your phone."
        )
    if nxt.kind == "grant_ends":
        return f"{current} was granted until {day(nxt.at)}; then you are on {name(FREE)}."
    if effective.plan == FREE:
        return f"You are on {name(FREE)}. Upgrade for more quality and no ads."
    return f"You are on {current}; it is active."
