"""Mobile money rules without I/O: MSISDN normalisation, the payment state machine,
pass stacking, the provisional bound, and the effective plan with passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.collections import airtel_report, mtn_report
from billing.mobile_money import Report, advance, provisional_allowed, stack
from billing.msisdn import InvalidMsisdn, WrongOperator, for_provider, normalise, prefixes_of
from billing.plans import MOBILE_MONEY, PROVISIONAL, SubscriptionRow, effective_plan
from runtime.settings import Settings, SettingsError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        "0772123456",
        "0772 123 456",
        "+256772123456",
        "+256 772 123456",
        "256772123456",
        "00256772123456",
        "772123456",
        "(0772) 123-456",
        "0772.123.456",
    ],
)
def test_every_way_of_writing_a_number_is_one_e164(raw: str) -> None:
    number = normalise(raw)
    assert number.e164 == "+256772123456"
    assert number.operator == "mtn"
    assert number.national == "772123456"
    assert number.digits == "256772123456"
    assert "123" not in number.masked()[:-3]


@pytest.mark.parametrize(
    ("raw", "operator"),
    [
        ("0761234567", "mtn"),
        ("0781234567", "mtn"),
        ("0391234567", "mtn"),
        ("0311234567", "mtn"),
        ("0701234567", "airtel"),
        ("0741234567", "airtel"),
        ("0751234567", "airtel"),
        ("0201234567", "airtel"),
    ],
)
def test_operator_from_the_range(raw: str, operator: str) -> None:
    assert normalise(raw).operator == operator


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "number that pays"),
        ("07721234", "10 digits"),
        ("077212345678", "10 digits"),
        ("0772abc456", "digits only"),
        ("+254712345678", "Ugandan"),
        ("0044772123456", "Ugandan"),
        ("0711234567", "071"),  # Uganda Telecom: no mobile money of ours
        ("0411234567", "041"),  # a Kampala landline
        ("\uff10\uff17\uff17\uff12123456", "digits only"),  # full-width digits
    ],
)
def test_invalid_numbers_say_why(raw: str, words: str) -> None:
    with pytest.raises(InvalidMsisdn) as info:
        normalise(raw)
    assert words in str(info.value)
    assert info.value.code == "invalid_msisdn"


def test_wrong_operator_for_the_chosen_provider_names_both() -> None:
    with pytest.raises(WrongOperator) as info:
        for_provider("0701234567", "mtn")
    message = str(info.value)
    assert info.value.code == "wrong_operator"
    assert "Airtel number" in message
    assert "MTN Mobile Money" in message
    assert "077" in message
    with pytest.raises(WrongOperator):
        for_provider("0772123456", "airtel")
    assert for_provider("0772123456", None).operator == "mtn"
    assert for_provider("0752123456", "airtel").e164 == "+256752123456"
    assert prefixes_of("airtel") == ["020", "070", "074", "075"]


@pytest.mark.parametrize(
    ("current", "reported", "after"),
    [
        ("pending", "successful", "successful"),
        ("pending", "failed", "failed"),
        ("pending", "pending", None),  # nothing new
        ("successful", "successful", None),  # a duplicated callback
        ("successful", "pending", None),  # a late pending never undoes a success
        ("successful", "failed", None),
        ("failed", "successful", None),
        ("failed", "pending", None),
        ("expired", "pending", None),
        ("expired", "failed", None),
        ("expired", "successful", "successful"),  # the money was taken: deliver
    ],
)
def test_status_only_moves_forward(current: str, reported: str, after: str | None) -> None:
    assert advance(current, reported) == after


def test_a_pass_starts_now_without_a_running_period() -> None:
    start, end = stack([], now=NOW, days=1)
    assert (start, end) == (NOW, NOW + timedelta(days=1))
    # a period that already ended does not delay it
    start, _ = stack([NOW - timedelta(hours=1)], now=NOW, days=1)
    assert start == NOW


def test_a_pass_stacks_after_the_last_running_period() -> None:
    ends = [NOW + timedelta(hours=5), NOW + timedelta(days=6)]
    start, end = stack(ends, now=NOW, days=7)
    assert start == NOW + timedelta(days=6)
    assert end == NOW + timedelta(days=13)
    # three day passes bought in a row cover three consecutive days
    periods: list[datetime] = []
    for _ in range(3):
        _, end = stack(periods, now=NOW, days=1)
        periods.append(end)
    assert periods[-1] == NOW + timedelta(days=3)


def test_one_provisional_grant_a_day() -> None:
    assert provisional_allowed(None, now=NOW)
    assert not provisional_allowed(NOW - timedelta(hours=23, minutes=59), now=NOW)
    assert provisional_allowed(NOW - timedelta(days=1), now=NOW)


def _row(provider: str, plan: str, rank: int, **kw: datetime) -> SubscriptionRow:
    return SubscriptionRow(
        id=f"{provider}-{plan}", provider=provider, plan=plan, rank=rank, status="active", **kw
    )


def test_effective_plan_with_a_pass_and_a_stacked_one() -> None:
    day = _row(
        MOBILE_MONEY,
        "premium",
        2,
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=23),
    )
    later = _row(
        MOBILE_MONEY,
        "basic",
        1,
        starts_at=NOW + timedelta(hours=23),
        ends_at=NOW + timedelta(days=31),
    )
    eff = effective_plan([day, later], now=NOW)
    assert eff.plan == "premium"
    assert eff.next.kind == "pass_ends"
    assert eff.recheck_at == NOW + timedelta(hours=23)
    # once the first ends, the stacked one takes over
    eff = effective_plan([day, later], now=NOW + timedelta(hours=23))
    assert eff.plan == "basic"
    # before a stacked pass starts it gives nothing, but the plan is rechecked then
    eff = effective_plan([later], now=NOW)
    assert (eff.plan, eff.recheck_at) == ("free", NOW + timedelta(hours=23))


def test_provisional_access_gives_the_plan_until_it_ends() -> None:
    prov = _row(PROVISIONAL, "premium", 2, ends_at=NOW + timedelta(minutes=10))
    stripe_basic = SubscriptionRow(id="s", provider="stripe", plan="basic", rank=1, status="active")
    eff = effective_plan([prov, stripe_basic], now=NOW)
    assert (eff.plan, eff.next.kind) == ("premium", "provisional_ends")
    assert eff.recheck_at == NOW + timedelta(minutes=10)
    eff = effective_plan([prov, stripe_basic], now=NOW + timedelta(minutes=10))
    assert eff.plan == "basic"


def test_stacked_passes_of_one_plan_read_as_one_paid_run() -> None:
    first = _row(
        MOBILE_MONEY,
        "premium",
        2,
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=23),
    )
    second = _row(
        MOBILE_MONEY,
        "premium",
        2,
        starts_at=NOW + timedelta(hours=23),
        ends_at=NOW + timedelta(days=8, hours=-1),
    )
    eff = effective_plan([second, first], now=NOW)
    assert eff.next.kind == "pass_ends"
    assert eff.next.at == NOW + timedelta(days=8, hours=-1)
    assert eff.recheck_at == NOW + timedelta(hours=23)  # still rechecked at the seam


# ------------------------------------------------------------------ settings

PRODUCTION = {
    "KUSH_MODE": "production",
    "KUSH_MASTER_KEY": "k" * 43,
    "STRIPE_WEBHOOK_SECRET": "whsec_live",
    "DATABASE_URL": "postgresql://kush:secret@db.internal/kush",
    "REDIS_URL": "redis://cache.internal:6379/0",
}
MTN = {
    "KUSH_MTN_MOMO_SUBSCRIPTION_KEY": "sub",
    "KUSH_MTN_MOMO_API_USER": "user",
    "KUSH_MTN_MOMO_API_KEY": "key",
}


def test_mobile_money_defaults_only_in_demo_mode() -> None:
    demo = Settings.from_env({})
    assert demo.provisional_minutes == 10
    assert demo.momo_env == "sandbox"
    assert demo.callback_secret  # a documented demo default
    assert demo.callback_base() == demo.admin_url()
    assert not demo.mtn_configured  # credentials never default
    assert demo.mtn_base() == "https://sandbox.momodeveloper.mtn.com"
    assert demo.mtn_target_environment() == "sandbox"
    prod = Settings.from_env(PRODUCTION)
    assert prod.momo_env is None
    assert prod.callback_secret is None
    assert prod.callback_base() is None
    assert not prod.mtn_configured


def test_production_with_a_provider_needs_everything_it_uses() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**PRODUCTION, "KUSH_MTN_MOMO_API_KEY": "key"})
    named = {p.split(":", 1)[0] for p in info.value.problems}
    assert named == {
        "KUSH_MTN_MOMO_API_USER",
        "KUSH_MOBILE_MONEY_ENV",
        "KUSH_MOBILE_MONEY_CALLBACK_URL",
        "KUSH_MOBILE_MONEY_CALLBACK_SECRET",
    }
    ok = Settings.from_env(
        {
            **PRODUCTION,
            **MTN,
            "KUSH_MOBILE_MONEY_ENV": "production",
            "KUSH_MOBILE_MONEY_CALLBACK_URL": "https://admin.kush.example",
            "KUSH_MOBILE_MONEY_CALLBACK_SECRET": "s" * 32,
        }
    )
    assert ok.mtn_configured
    assert ok.mtn_base() == "https://proxy.momoapi.mtn.com"
    assert ok.mtn_target_environment() == "mtnuganda"
    assert ok.airtel_base() == "https://openapi.airtel.africa"
    assert ok.masked()["KUSH_MTN_MOMO_API_KEY"] == "********"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KUSH_MOBILE_MONEY_ENV": "live"}, "KUSH_MOBILE_MONEY_ENV"),
        ({"KUSH_PROVISIONAL_MINUTES": "-1"}, "KUSH_PROVISIONAL_MINUTES"),
        ({"KUSH_MTN_MOMO_BASE_URL": "ftp://x"}, "KUSH_MTN_MOMO_BASE_URL"),
    ],
)
def test_bad_mobile_money_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert [p.split(":", 1)[0] for p in info.value.problems] == [variable]


def test_provider_reports_as_we_store_them() -> None:
    assert mtn_report({"status": "SUCCESSFUL", "financialTransactionId": 123}) == Report(
        status="successful", transaction_id="123"
    )
    failed = mtn_report({"status": "FAILED", "reason": {"code": "APPROVAL\x00_REJECTED"}})
    assert failed == Report(status="failed", reason="APPROVAL_REJECTED")
    assert mtn_report({"status": "PENDING"}) == Report(status="pending")
    assert mtn_report({"status": "WHATEVER"}) is None
    assert mtn_report(["not", "an", "object"]) is None
    assert airtel_report({"status": "TS", "airtel_money_id": "MP1"}) == Report(
        status="successful", transaction_id="MP1"
    )
    assert airtel_report({"status_code": "TF", "message": "Insufficient funds"}) == Report(
        status="failed", reason="Insufficient funds"
    )
    assert airtel_report({"status": "TIP"}) == Report(status="pending")
    assert airtel_report({"status": "TA"}) == Report(status="pending")
    assert airtel_report(None) is None
