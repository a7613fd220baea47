"""The effective plan: one pure function over a user's subscription rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.mail import backoff_s, render, smtp_target
from billing.plans import SubscriptionRow, describe_next, effective_plan
from runtime.settings import Settings, SettingsError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GRACE = timedelta(hours=72)
RANK = {"free": 0, "basic": 1, "premium": 2}


def row(plan: str, status: str, provider: str = "stripe", **kw: object) -> SubscriptionRow:
    return SubscriptionRow(
        id=f"{provider}-{plan}",
        provider=provider,
        plan=plan,
        rank=RANK[plan],
        status=status,
        **kw,  # type: ignore[arg-type]
    )


def test_no_rows_is_free() -> None:
    eff = effective_plan([], now=NOW, grace=GRACE)
    assert (eff.plan, eff.source, eff.recheck_at, eff.next.kind) == ("free", None, None, "none")


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_live_statuses_give_the_plan(status: str) -> None:
    end = NOW + timedelta(days=20)
    eff = effective_plan([row("premium", status, current_period_end=end)], now=NOW, grace=GRACE)
    assert eff.plan == "premium"
    assert eff.recheck_at is None
    assert (eff.next.kind, eff.next.at, eff.next.plan) == ("renews", end, "premium")


@pytest.mark.parametrize(
    "status", ["canceled", "unpaid", "incomplete", "incomplete_expired", "paused"]
)
def test_dead_statuses_give_nothing(status: str) -> None:
    assert effective_plan([row("premium", status)], now=NOW, grace=GRACE).plan == "free"


def test_past_due_keeps_the_plan_for_the_grace_period_then_free() -> None:
    since = NOW - timedelta(hours=71)
    sub = row("premium", "past_due", past_due_since=since)
    eff = effective_plan([sub], now=NOW, grace=GRACE)
    assert eff.plan == "premium"
    assert eff.grace_until == since + GRACE
    assert eff.recheck_at == since + GRACE
    assert eff.next.kind == "grace_ends"
    later = effective_plan([sub], now=since + GRACE, grace=GRACE)
    assert later.plan == "free"
    assert effective_plan([sub], now=NOW, grace=timedelta(0)).plan == "free"


def test_highest_rank_wins_and_a_grant_running_out_is_a_recheck() -> None:
    grant_end = NOW + timedelta(days=3)
    rows = [
        row("basic", "active", current_period_end=NOW + timedelta(days=9)),
        row("premium", "active", provider="manual", ends_at=grant_end),
    ]
    eff = effective_plan(rows, now=NOW, grace=GRACE)
    assert eff.plan == "premium"
    assert eff.source is not None
    assert eff.source.provider == "manual"
    assert eff.recheck_at == grant_end
    assert eff.next.kind == "grant_ends"
    assert effective_plan(rows, now=grant_end, grace=GRACE).plan == "basic"


def test_expired_grant_gives_nothing_and_cancel_at_period_end_says_when() -> None:
    old = row("premium", "active", provider="manual", ends_at=NOW - timedelta(seconds=1))
    end = NOW + timedelta(days=5)
    ending = row("basic", "active", cancel_at_period_end=True, current_period_end=end)
    eff = effective_plan([old, ending], now=NOW, grace=GRACE)
    assert eff.plan == "basic"
    assert (eff.next.kind, eff.next.at, eff.next.plan) == ("ends", end, "free")
    assert "ends on" in describe_next(eff)


def test_settings_billing_block() -> None:
    s = Settings.from_env(
        {
            "STRIPE_SECRET_KEY": "sk_test_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old",
            "STRIPE_PRICE_BASIC": "price_b",
            "STRIPE_PRICE_PREMIUM": "price_p",
            "KUSH_BILLING_GRACE_HOURS": "0",
            "KUSH_SMTP_URL": "smtp://user:pw@mail.example:587",
        }
    )
    assert s.webhook_secrets == ("whsec_new", "whsec_old")
    assert s.billing_configured
    assert (s.stripe_price("premium"), s.plan_of_price("price_b")) == ("price_p", "basic")
    assert s.plan_of_price("price_other") is None
    assert s.billing_grace_hours == 0
    assert s.billing_return_url("success") == "http://127.0.0.1:8080/upgrade?checkout=success"
    shown = s.masked()
    assert "pw" not in shown["KUSH_SMTP_URL"]
    assert shown["STRIPE_SECRET_KEY"] == "********"
    defaults = Settings.from_env({})
    assert (defaults.billing_grace_hours, defaults.billing_configured) == (72, False)
    assert defaults.webhook_secrets == ("whsec_demo",)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KUSH_BILLING_GRACE_HOURS": "-1"}, "KUSH_BILLING_GRACE_HOURS"),
        ({"KUSH_SMTP_URL": "http://mail"}, "KUSH_SMTP_URL"),
        ({"KUSH_BILLING_SUCCESS_URL": "ftp://x"}, "KUSH_BILLING_SUCCESS_URL"),
        ({"STRIPE_API_BASE": "localhost:1"}, "STRIPE_API_BASE"),
    ],
)
def test_bad_billing_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}:"):
        Settings.from_env(env)


def test_mail_rendering_backoff_and_smtp_urls() -> None:
    subject, body = render(
        "payment_failed", {"plan_name": "Premium", "grace_until": "2026-12-03 12:00 UTC"}
    )
    assert subject == "Your Kush Films payment failed"
    assert "2026-12-03 12:00 UTC" in body
    assert [backoff_s(n) for n in (1, 2, 3, 20)] == [30, 60, 120, 3600]
    t = smtp_target("smtp://AKIA%2Fx:se%40cret@email-smtp.eu-west-1.amazonaws.com:587")
    assert (t.host, t.port, t.tls, t.username, t.password) == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
        False,
        "AKIA/x",
        "se@cret",
    )
    assert smtp_target("smtps://h").port == 465
    assert smtp_target("smtp://h").port == 25
