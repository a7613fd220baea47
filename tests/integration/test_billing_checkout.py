"""Checkout and the Customer Portal: the real stripe client code, pointed at a local
server that answers like Stripe's API and records what it was sent."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.integration.helpers import PASSWORD, bearer, new_email
from tests.support.stripe_api import FakeStripe
from tokens.service.auth import create_account

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
async def stripe_api() -> AsyncIterator[FakeStripe]:
    server = await FakeStripe().start()
    yield server
    await server.stop()


@pytest.fixture
def bill_settings(settings: Settings, stripe_api: FakeStripe) -> Settings:
    return dataclasses.replace(
        settings,
        stripe_secret_key="sk_test_kush",
        stripe_api_base=stripe_api.base,
        stripe_timeout_s=1.0,
        stripe_price_basic=PRICE_BASIC,
        stripe_price_premium=PRICE_PREMIUM,
        billing_success_url="https://watch.kush.test/upgrade?checkout=success",
        billing_cancel_url="https://watch.kush.test/upgrade?checkout=cancel",
    )


@pytest.fixture
async def gateway(bill_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(bill_settings))


async def test_checkout_creates_the_customer_once_and_a_subscription_session(
    gateway: TestClient, stripe_api: FakeStripe, pg: asyncpg.Connection
) -> None:
    account = await new_account(gateway, pg)
    user_id = account["user"]["id"]
    headers = bearer(account["access_token"])
    resp = await gateway.post("/v1/billing/checkout", json={"plan": "premium"}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    url = (await resp.json())["url"]
    assert url.startswith(f"{stripe_api.base}/c/pay/cs_test_")

    [created] = stripe_api.calls("/v1/customers")
    assert created.params["email"] == account["email"]
    assert created.params["metadata[user_id]"] == user_id
    assert created.headers["Idempotency-Key"]
    assert created.headers["Authorization"] == "Bearer sk_test_kush"
    stored = await pg.fetchval("SELECT stripe_customer_id FROM users WHERE id = $1::uuid", user_id)
    assert stored.startswith("cus_")

    [session] = stripe_api.calls("/v1/checkout/sessions")
    p = session.params
    assert p["mode"] == "subscription"
    assert p["line_items[0][price]"] == PRICE_PREMIUM
    assert p["line_items[0][quantity]"] == "1"
    assert p["customer"] == stored
    assert p["client_reference_id"] == user_id
    assert p["success_url"] == "https://watch.kush.test/upgrade?checkout=success"
    assert p["cancel_url"] == "https://watch.kush.test/upgrade?checkout=cancel"
    assert p["subscription_data[metadata][plan]"] == "premium"
    assert p["subscription_data[metadata][user_id]"] == user_id
    key = session.headers["Idempotency-Key"]
    assert key.startswith("kush-")

    # asked again (a double click): the stored customer is reused and the same key sent
    resp = await gateway.post("/v1/billing/checkout", json={"plan": "premium"}, headers=headers)
    assert resp.status == 200
    assert (await resp.json())["url"] == url
    assert len(stripe_api.calls("/v1/customers")) == 1
    second = stripe_api.calls("/v1/checkout/sessions")[1]
    assert second.headers["Idempotency-Key"] == key
    # another plan is another session
    resp = await gateway.post("/v1/billing/checkout", json={"plan": "basic"}, headers=headers)
    assert resp.status == 200
    third = stripe_api.calls("/v1/checkout/sessions")[2]
    assert third.params["line_items[0][price]"] == PRICE_BASIC
    assert third.headers["Idempotency-Key"] != key


async def test_checkout_input_and_auth(
    gateway: TestClient, stripe_api: FakeStripe, pg: asyncpg.Connection
) -> None:
    assert (await gateway.post("/v1/billing/checkout", json={"plan": "basic"})).status == 401
    account = await new_account(gateway, pg)
    headers = bearer(account["access_token"])
    for body in ({"plan": "free"}, {"plan": "gold"}, {}):
        resp = await gateway.post("/v1/billing/checkout", json=body, headers=headers)
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "invalid_request"
    resp = await gateway.post("/v1/billing/checkout", data=b"[", headers=headers)
    assert resp.status == 400
    assert stripe_api.requests == []


async def test_portal_needs_a_customer_then_opens(
    gateway: TestClient, stripe_api: FakeStripe, pg: asyncpg.Connection
) -> None:
    account = await new_account(gateway, pg)
    headers = bearer(account["access_token"])
    resp = await gateway.post("/v1/billing/portal", headers=headers)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "no_billing_account"
    assert (
        await gateway.post("/v1/billing/checkout", json={"plan": "basic"}, headers=headers)
    ).status == 200
    resp = await gateway.post("/v1/billing/portal", headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["url"].startswith("https://billing.stripe.test/p/session/")
    [call] = stripe_api.calls("/v1/billing_portal/sessions")
    customer = stripe_api.calls("/v1/customers")
    assert len(customer) == 1
    assert call.params["customer"].startswith("cus_")
    assert call.params["return_url"].endswith("/upgrade")


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_stripe_failing_or_hanging_is_503_with_retry_after(
    gateway: TestClient, stripe_api: FakeStripe, pg: asyncpg.Connection, mode: str
) -> None:
    account = await new_account(gateway, pg)
    stripe_api.mode = mode
    # the stand-in hangs for 60 s; the gateway's 1 s Stripe timeout must answer long before
    # this guard (which only keeps a broken build from waiting the full minute)
    resp = await asyncio.wait_for(
        gateway.post(
            "/v1/billing/checkout",
            json={"plan": "premium"},
            headers=bearer(account["access_token"]),
        ),
        timeout=30,
    )
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"]["code"] == "billing_unavailable"
    assert stripe_api.requests  # it did try Stripe
    stored = await pg.fetchval(
        "SELECT stripe_customer_id FROM users WHERE id = $1::uuid", account["user"]["id"]
    )
    assert stored is None


async def test_subscription_state_lists_the_plans_with_prices(
    gateway: TestClient, pg: asyncpg.Connection
) -> None:
    account = await new_account(gateway, pg)
    resp = await gateway.get("/v1/billing/subscription", headers=bearer(account["access_token"]))
    assert resp.status == 200
    body = await resp.json()
    assert (body["plan"], body["status"], body["billing_configured"]) == ("free", None, True)
    assert body["next"]["kind"] == "none"
    prices = {p["id"]: (p["amount_minor"], p["currency"], p["purchasable"]) for p in body["plans"]}
    assert prices == {
        "free": (0, "usd", False),
        "basic": (299, "usd", True),
        "premium": (499, "usd", True),
    }


async def test_without_a_secret_key_checkout_says_how_to_configure(
    settings: Settings, aiohttp_client, pg: asyncpg.Connection
) -> None:
    client: TestClient = await aiohttp_client(create_gateway(settings))
    account = await new_account(client, pg)
    headers = bearer(account["access_token"])
    for path, body in (("/v1/billing/checkout", {"plan": "basic"}), ("/v1/billing/portal", None)):
        resp = await client.post(path, json=body, headers=headers)
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert error["code"] == "billing_not_configured"
        assert "STRIPE_SECRET_KEY" in error["message"]
    state = await (await client.get("/v1/billing/subscription", headers=headers)).json()
    assert state["billing_configured"] is False
    assert not any(p["purchasable"] for p in state["plans"])


async def test_billing_replies_fit_the_openapi_document(
    gateway: TestClient, stripe_api: FakeStripe, pg: asyncpg.Connection
) -> None:
    from tests.integration.test_openapi import PUBLIC_DOC, check_reply, document

    doc = await document(gateway, PUBLIC_DOC)
    account = await new_account(gateway, pg)
    headers = bearer(account["access_token"])
    state = await (await gateway.get("/v1/billing/subscription", headers=headers)).json()
    check_reply(doc, "/v1/billing/subscription", "get", 200, state)
    resp = await gateway.post("/v1/billing/checkout", json={"plan": "basic"}, headers=headers)
    check_reply(doc, "/v1/billing/checkout", "post", 200, await resp.json())
    stripe_api.mode = "fail"
    resp = await gateway.post("/v1/billing/portal", headers=headers)
    assert resp.status == 503
    check_reply(doc, "/v1/billing/portal", "post", 503, await resp.json())


async def test_a_live_stripe_subscription_goes_to_the_portal_not_a_second_checkout(
    gateway: TestClient, stripe_api: FakeStripe, pg: asyncpg.Connection
) -> None:
    account = await new_account(gateway, pg)
    user_id = account["user"]["id"]
    await pg.execute(
        """INSERT INTO subscriptions (user_id, plan_id, status, provider,
               provider_subscription_id) VALUES ($1::uuid, 'basic', 'past_due', 'stripe', $2)""",
        user_id,
        f"sub_{user_id[:8]}",
    )
    resp = await gateway.post(
        "/v1/billing/checkout", json={"plan": "premium"}, headers=bearer(account["access_token"])
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "already_subscribed"
    assert stripe_api.calls("/v1/checkout/sessions") == []
