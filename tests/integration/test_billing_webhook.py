"""The Stripe webhook against the running admin service: real signatures (the stripe
library's scheme), real PostgreSQL; duplicates, races and reordering."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.integration.helpers import PASSWORD, bearer, new_email
from tests.support.stripe_api import (
    checkout_obj,
    event,
    invoice_obj,
    sign,
    subscription_obj,
)
from tokens.service.auth import create_account

WEBHOOK = "/billing/stripe/webhook"
SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
PRICE_BASIC = "price_basic_test"
PRICE_PREMIUM = "price_premium_test"


async def new_account(gateway: TestClient, pg: asyncpg.Connection) -> dict[str, Any]:
    """A fresh account made directly (registering over HTTP would spend the run's shared
    per-address register budget that other tests count on), logged in."""
    email = new_email()
    await create_account(pg, email, PASSWORD)
    resp = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    body["email"] = email
    return body


@pytest.fixture
def bill_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        stripe_webhook_secret=f"{SECRET},{OLD_SECRET}",
        stripe_price_basic=PRICE_BASIC,
        stripe_price_premium=PRICE_PREMIUM,
        login_free_failures=10_000,
    )


@pytest.fixture
async def admin(bill_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(bill_settings))


@pytest.fixture
async def gateway(bill_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(bill_settings))


@dataclasses.dataclass
class Customer:
    user_id: str
    customer: str
    token: str
    sub_id: str


@pytest.fixture
async def customer(gateway: TestClient, pg: asyncpg.Connection) -> Customer:
    """A fresh account whose Stripe customer exists (as checkout leaves it)."""
    account = await new_account(gateway, pg)
    user_id = account["user"]["id"]
    cus = f"cus_{secrets.token_hex(6)}"
    await pg.execute("UPDATE users SET stripe_customer_id = $2 WHERE id = $1::uuid", user_id, cus)
    return Customer(user_id, cus, account["access_token"], f"sub_{secrets.token_hex(6)}")


async def post(
    admin: TestClient, evt: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None
) -> Any:
    payload = json.dumps(evt)
    return await admin.post(
        WEBHOOK,
        data=payload,
        headers={
            "Stripe-Signature": sign(payload, secret, timestamp),
            "Content-Type": "application/json",
        },
    )


async def ok(admin: TestClient, evt: dict[str, Any], **kw: Any) -> dict[str, Any]:
    resp = await post(admin, evt, **kw)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["received"] is True
    return body


async def stripe_row(pg: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    return await pg.fetchrow(
        "SELECT * FROM subscriptions WHERE user_id = $1::uuid AND provider = 'stripe'", user_id
    )


async def mails(pg: asyncpg.Connection, user_id: str, template: str) -> int:
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM mail_outbox WHERE user_id = $1::uuid AND template = $2",
            user_id,
            template,
        )
    )


async def plan_of(gateway: TestClient, token: str) -> dict[str, Any]:
    resp = await gateway.get("/v1/billing/subscription", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


# ------------------------------------------------------------------ signatures


async def test_bad_signatures_are_400_and_write_nothing(
    admin: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    evt = event(
        "checkout.session.completed",
        checkout_obj(customer.user_id, customer.customer, customer.sub_id, "premium"),
    )
    payload = json.dumps(evt)
    now = int(time.time())
    tampered = payload.replace('"premium"', '"basic"')
    assert tampered != payload
    cases = {
        "tampered body": (tampered, sign(payload, SECRET, now)),
        "wrong secret": (payload, sign(payload, "whsec_someone_else", now)),
        "older than the tolerance": (payload, sign(payload, SECRET, now - 301)),
        "garbage header": (payload, "this is not a signature"),
        "v0 scheme only": (payload, sign(payload, SECRET, now).replace("v1=", "v0=")),
        "empty header": (payload, ""),
    }
    for name, (body, header) in cases.items():
        resp = await admin.post(WEBHOOK, data=body, headers={"Stripe-Signature": header})
        assert resp.status == 400, name
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_signature", name
    resp = await admin.post(WEBHOOK, data=payload)  # no header at all
    assert resp.status == 400
    resp = await admin.post(WEBHOOK, data=b"\xff\xfe", headers={"Stripe-Signature": "t=1,v1=0"})
    assert resp.status == 400
    assert await pg.fetchval("SELECT count(*) FROM stripe_events WHERE id = $1", evt["id"]) == 0
    assert await stripe_row(pg, customer.user_id) is None
    assert await mails(pg, customer.user_id, "welcome") == 0
    # the same body, properly signed, is accepted: the refusals were about the signature
    body = await ok(admin, evt)
    assert body["outcome"] == "applied"


async def test_previous_secret_still_verifies_and_unknown_types_are_acknowledged(
    admin: TestClient, pg: asyncpg.Connection
) -> None:
    evt = event("customer.created", {"id": "cus_x", "object": "customer"})
    body = await ok(admin, evt, secret=OLD_SECRET)
    assert (body["duplicate"], body["outcome"]) == (False, "unhandled")
    row = await pg.fetchrow("SELECT type, outcome FROM stripe_events WHERE id = $1", evt["id"])
    assert (row["type"], row["outcome"]) == ("customer.created", "unhandled")


# ------------------------------------------------------------------ the happy path


async def test_checkout_then_renewal_payment_and_mails(
    admin: TestClient, gateway: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    c = customer
    assert (await plan_of(gateway, c.token))["plan"] == "free"
    await ok(
        admin,
        event(
            "checkout.session.completed", checkout_obj(c.user_id, c.customer, c.sub_id, "premium")
        ),
    )
    row = await stripe_row(pg, c.user_id)
    assert row is not None
    assert (row["plan_id"], row["status"], row["provider_subscription_id"]) == (
        "premium",
        "active",
        c.sub_id,
    )
    state = await plan_of(gateway, c.token)
    assert (state["plan"], state["status"], state["provider"]) == ("premium", "active", "stripe")
    assert await mails(pg, c.user_id, "welcome") == 1
    entitled = await pg.fetchval(
        "SELECT plan_id FROM entitlements WHERE user_id = $1::uuid", c.user_id
    )
    assert entitled == "premium"

    sub = subscription_obj(c.sub_id, c.customer, "active", PRICE_PREMIUM, cancel_at_period_end=True)
    await ok(admin, event("customer.subscription.updated", sub, created=int(time.time()) + 1))
    state = await plan_of(gateway, c.token)
    assert state["cancel_at_period_end"] is True
    assert state["next"]["kind"] == "ends"
    assert await mails(pg, c.user_id, "subscription_ending") == 1

    inv = invoice_obj(f"in_{secrets.token_hex(5)}", c.customer, c.sub_id, PRICE_PREMIUM)
    await ok(admin, event("invoice.paid", inv, created=int(time.time()) + 2))
    payment = await pg.fetchrow(
        "SELECT amount_minor, currency, plan_id FROM payments WHERE provider_invoice_id = $1",
        inv["id"],
    )
    assert (payment["amount_minor"], payment["currency"], payment["plan_id"]) == (
        499,
        "usd",
        "premium",
    )
    assert await mails(pg, c.user_id, "payment_succeeded") == 1


# ------------------------------------------------------------------ duplicates


async def test_the_same_event_twice_and_twice_at_once_has_one_effect(
    admin: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    c = customer
    created = int(time.time())
    await ok(
        admin,
        event(
            "customer.subscription.created",
            subscription_obj(c.sub_id, c.customer, "active", PRICE_BASIC),
            created=created,
        ),
    )
    first = event(
        "invoice.paid",
        invoice_obj("in_" + secrets.token_hex(5), c.customer, c.sub_id, PRICE_BASIC, amount=299),
        created=created + 1,
    )
    assert (await ok(admin, first))["duplicate"] is False
    again = await ok(admin, first)
    assert (again["duplicate"], again["outcome"]) == (True, "duplicate")

    racing = event(
        "invoice.paid",
        invoice_obj("in_" + secrets.token_hex(5), c.customer, c.sub_id, PRICE_BASIC, amount=299),
        created=created + 2,
    )
    replies = await asyncio.gather(*(post(admin, racing) for _ in range(2)))
    assert [r.status for r in replies] == [200, 200]
    flags = sorted([(await r.json())["duplicate"] for r in replies])
    assert flags == [False, True]

    paid = await pg.fetchval("SELECT count(*) FROM payments WHERE user_id = $1::uuid", c.user_id)
    assert paid == 2
    assert await mails(pg, c.user_id, "payment_succeeded") == 2
    stored = await pg.fetchval(
        "SELECT count(*) FROM stripe_events WHERE id = ANY($1)", [first["id"], racing["id"]]
    )
    assert stored == 2


# ------------------------------------------------------------------ out of order


async def test_updated_arriving_after_deleted_does_not_revive_it(
    admin: TestClient, gateway: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    c = customer
    t0 = int(time.time()) - 100
    await ok(
        admin,
        event(
            "customer.subscription.created",
            subscription_obj(c.sub_id, c.customer, "active", PRICE_PREMIUM),
            created=t0,
        ),
    )
    assert (await plan_of(gateway, c.token))["plan"] == "premium"
    deleted = await ok(
        admin,
        event(
            "customer.subscription.deleted",
            subscription_obj(c.sub_id, c.customer, "canceled", PRICE_PREMIUM),
            created=t0 + 20,
        ),
    )
    assert deleted["outcome"] == "applied"
    late = await ok(
        admin,
        event(
            "customer.subscription.updated",
            subscription_obj(c.sub_id, c.customer, "active", PRICE_PREMIUM),
            created=t0 + 10,
        ),
    )
    assert late["outcome"] == "stale"
    row = await stripe_row(pg, c.user_id)
    assert row is not None
    assert row["status"] == "canceled"
    assert (await plan_of(gateway, c.token))["plan"] == "free"
    assert await mails(pg, c.user_id, "subscription_ended") == 1
    # even a *newer* non-terminal event cannot bring an ended subscription back
    newer = await ok(
        admin,
        event(
            "customer.subscription.updated",
            subscription_obj(c.sub_id, c.customer, "active", PRICE_PREMIUM),
            created=t0 + 30,
        ),
    )
    assert newer["outcome"] == "stale"
    assert (await plan_of(gateway, c.token))["plan"] == "free"


async def test_payment_failed_arriving_after_a_later_paid_changes_nothing(
    admin: TestClient, gateway: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    c = customer
    t0 = int(time.time()) - 100
    await ok(
        admin,
        event(
            "customer.subscription.created",
            subscription_obj(c.sub_id, c.customer, "active", PRICE_BASIC),
            created=t0,
        ),
    )
    inv = "in_" + secrets.token_hex(5)
    await ok(
        admin,
        event("invoice.paid", invoice_obj(inv, c.customer, c.sub_id, PRICE_BASIC), created=t0 + 20),
    )
    late = await ok(
        admin,
        event(
            "invoice.payment_failed",
            invoice_obj(inv, c.customer, c.sub_id, PRICE_BASIC, paid=False),
            created=t0 + 10,
        ),
    )
    assert late["outcome"] == "stale"
    row = await stripe_row(pg, c.user_id)
    assert row is not None
    assert (row["status"], row["past_due_since"]) == ("active", None)
    assert (await plan_of(gateway, c.token))["plan"] == "basic"
    assert await mails(pg, c.user_id, "payment_failed") == 0
    # in order, the same failure does move it to past_due (the grace period starts)
    failed = await ok(
        admin,
        event(
            "invoice.payment_failed",
            invoice_obj(
                "in_" + secrets.token_hex(5), c.customer, c.sub_id, PRICE_BASIC, paid=False
            ),
            created=t0 + 30,
        ),
    )
    assert failed["outcome"] == "applied"
    state = await plan_of(gateway, c.token)
    assert (state["plan"], state["status"]) == ("basic", "past_due")
    assert state["grace_until"] is not None
    assert await mails(pg, c.user_id, "payment_failed") == 1


async def test_events_for_unknown_customers_are_acknowledged(
    admin: TestClient, pg: asyncpg.Connection
) -> None:
    sub = subscription_obj("sub_nobody", "cus_nobody", "active", PRICE_BASIC)
    body = await ok(admin, event("customer.subscription.updated", sub))
    assert body["outcome"] == "unknown_customer"
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM subscriptions WHERE provider_subscription_id = 'sub_nobody'"
        )
        == 0
    )


# ------------------------------------------------------------------ admin routes


async def admin_token(gateway: TestClient, pg: asyncpg.Connection, role: str = "admin") -> str:
    account = await new_account(gateway, pg)
    await pg.execute("UPDATE users SET role = $2 WHERE email = $1", account["email"], role)
    resp = await gateway.post(
        "/v1/auth/login",
        json={"email": account["email"], "password": "correct horse battery staple"},
    )
    return str((await resp.json())["access_token"])


async def test_admin_grants_and_revokes_by_hand_audited(
    admin: TestClient, gateway: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    c = customer
    token = await admin_token(gateway, pg)
    moderator = await admin_token(gateway, pg, "moderator")
    path = f"/admin/v1/users/{c.user_id}/plan"
    assert (await admin.post(path, json={"plan": "basic", "reason": "x"})).status == 401
    resp = await admin.post(path, json={"plan": "basic", "reason": "x"}, headers=bearer(moderator))
    assert resp.status == 403
    resp = await admin.post(path, json={"plan": "gold", "reason": "x"}, headers=bearer(token))
    assert resp.status == 422
    resp = await admin.post(path, json={"plan": "basic"}, headers=bearer(token))
    assert resp.status == 422
    past = "2020-01-01T00:00:00Z"
    resp = await admin.post(
        path, json={"plan": "basic", "reason": "x", "until": past}, headers=bearer(token)
    )
    assert resp.status == 422
    missing = f"/admin/v1/users/{uuid.uuid4()}/plan"
    resp = await admin.post(missing, json={"plan": "basic", "reason": "x"}, headers=bearer(token))
    assert resp.status == 404
    resp = await admin.post(
        "/admin/v1/users/not-a-uuid/plan",
        json={"plan": "basic", "reason": "x"},
        headers=bearer(token),
    )
    assert resp.status == 404

    resp = await admin.post(
        path,
        json={"plan": "premium", "reason": "support ticket 42", "until": "2099-01-01T00:00:00Z"},
        headers=bearer(token),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["plan"], body["provider"], body["next"].startswith("Premium")) == (
        "premium",
        "manual",
        True,
    )
    assert (await plan_of(gateway, c.token))["plan"] == "premium"
    audit = await pg.fetchrow(
        """SELECT action, details FROM audit_log WHERE target_id = $1
            ORDER BY id DESC LIMIT 1""",
        c.user_id,
    )
    details = json.loads(audit["details"])
    assert audit["action"] == "billing.plan_grant"
    assert (details["reason"], details["effective_before"], details["effective_after"]) == (
        "support ticket 42",
        "free",
        "premium",
    )

    resp = await admin.get(
        "/admin/v1/subscriptions?status=active&provider=manual", headers=bearer(moderator)
    )
    assert resp.status == 200
    mine = [s for s in (await resp.json())["items"] if s["user_id"] == c.user_id]
    assert [(s["plan"], s["status"], s["reason"]) for s in mine] == [
        ("premium", "active", "support ticket 42")
    ]
    resp = await admin.get("/admin/v1/subscriptions?status=bogus", headers=bearer(token))
    assert resp.status == 422

    resp = await admin.post(path, json={"plan": "free", "reason": "refund"}, headers=bearer(token))
    assert resp.status == 200
    assert (await resp.json())["plan"] == "free"
    assert (await plan_of(gateway, c.token))["plan"] == "free"
    actions = await pg.fetch(
        "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id", c.user_id
    )
    assert [a["action"] for a in actions][-2:] == ["billing.plan_grant", "billing.plan_revoke"]


async def test_revenue_report_adds_up_paid_invoices(
    admin: TestClient, gateway: TestClient, customer: Customer, pg: asyncpg.Connection
) -> None:
    c = customer
    token = await admin_token(gateway, pg)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    resp = await admin.get(
        f"/admin/v1/reports/revenue?from={today}&to={today}", headers=bearer(token)
    )
    before = {t["currency"]: t for t in (await resp.json())["totals"]}
    await ok(
        admin,
        event(
            "customer.subscription.created",
            subscription_obj(c.sub_id, c.customer, "active", PRICE_PREMIUM),
        ),
    )
    for amount in (499, 499):
        inv = invoice_obj(
            "in_" + secrets.token_hex(5), c.customer, c.sub_id, PRICE_PREMIUM, amount=amount
        )
        await ok(admin, event("invoice.paid", inv))
    resp = await admin.get(
        f"/admin/v1/reports/revenue?from={today}&to={today}", headers=bearer(token)
    )
    assert resp.status == 200
    body = await resp.json()
    usd = {t["currency"]: t for t in body["totals"]}["usd"]
    was = before.get("usd", {"payments": 0, "amount_minor": 0})
    assert usd["payments"] - was["payments"] == 2
    assert usd["amount_minor"] - was["amount_minor"] == 998
    assert any(r["plan"] == "premium" and r["day"] == today for r in body["items"])
    resp = await admin.get(
        "/admin/v1/reports/revenue?from=2026-01-10&to=2026-01-01", headers=bearer(token)
    )
    assert resp.status == 422
