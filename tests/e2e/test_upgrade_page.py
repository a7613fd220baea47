"""The Upgrade page in Chromium: Choose Premium -> Stripe Checkout (a local stand-in that
"pays" and sends the browser back) -> the page waits for the webhook -> Premium."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from gateway.app import create_app
from runtime.settings import Settings
from tests.e2e.browser import DESKTOP, WAIT_MS, OpenViewer
from tests.integration.helpers import PASSWORD, free_port
from tests.support.stripe_api import FakeStripe, checkout_obj, event, sign
from tokens.service.auth import create_account

SECRET = "whsec_test_e2e"


@pytest.fixture
async def stripe_api() -> AsyncIterator[FakeStripe]:
    server = await FakeStripe().start()
    yield server
    await server.stop()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def billing_settings(play_settings: Settings, stripe_api: FakeStripe, port: int) -> Settings:
    return dataclasses.replace(
        play_settings,
        public_url=f"http://127.0.0.1:{port}",  # where Checkout sends the browser back
        stripe_secret_key="sk_test_e2e",
        stripe_api_base=stripe_api.base,
        stripe_webhook_secret=SECRET,
        stripe_price_basic="price_basic_e2e",
        stripe_price_premium="price_premium_e2e",
    )


@pytest.fixture
async def gateway_url(billing_settings: Settings, aiohttp_server: Any, port: int) -> str:
    """This module's gateway has billing configured (Stripe is the local stand-in)."""
    server = await aiohttp_server(create_app(billing_settings), host="127.0.0.1", port=port)
    return str(server.make_url("")).rstrip("/")


async def register(pg: asyncpg.Connection) -> str:
    """A fresh account, made directly (not through the per-address register limit)."""
    email = f"upgrade-{secrets.token_hex(4)}@example.ug"
    await create_account(pg, email, PASSWORD)
    return email


async def test_choose_premium_checkout_and_back(
    open_viewer: OpenViewer,
    gateway_url: str,
    billing_settings: Settings,
    stripe_api: FakeStripe,
    pg: asyncpg.Connection,
    aiohttp_client: Any,
) -> None:
    admin: TestClient = await aiohttp_client(create_admin(billing_settings))
    viewer = await open_viewer("upgrade", DESKTOP)
    page = viewer.page
    email = await register(pg)
    await viewer.goto("/upgrade")
    await page.click("#signin-button")
    await page.locator("#signin-dialog").wait_for(state="visible", timeout=WAIT_MS)
    await page.fill("#signin-email", email)
    await page.fill("#signin-password", PASSWORD)
    await page.click("#signin-submit")
    await page.locator("#plan-name").filter(has_text="Free").wait_for(timeout=WAIT_MS)
    cards = page.locator("#plans .plan-card")
    await cards.nth(2).wait_for(timeout=WAIT_MS)
    assert await cards.count() == 3
    assert "$4.99 / month" in await page.locator('.plan-card[data-plan="premium"]').inner_text()
    assert await page.locator("#billing-notice").is_hidden()
    await viewer.screenshot("upgrade-plans")

    await page.click('.plan-card[data-plan="premium"] button')
    await page.wait_for_url("**/upgrade?checkout=success", timeout=WAIT_MS)
    await page.locator("#upgrade-status").filter(has_text="Waiting").wait_for(timeout=WAIT_MS)
    [checkout] = stripe_api.calls("/v1/checkout/sessions")
    assert checkout.params["line_items[0][price]"] == "price_premium_e2e"

    user = await pg.fetchrow("SELECT id, stripe_customer_id FROM users WHERE email = $1", email)
    assert user["stripe_customer_id"] == checkout.params["customer"]
    obj = checkout_obj(
        str(user["id"]), user["stripe_customer_id"], "sub_e2e_" + secrets.token_hex(4), "premium"
    )
    payload = json.dumps(event("checkout.session.completed", obj))
    resp = await admin.post(
        "/billing/stripe/webhook", data=payload, headers={"Stripe-Signature": sign(payload, SECRET)}
    )
    assert resp.status == 200

    await (
        page.locator("#upgrade-status")
        .filter(has_text="Payment confirmed")
        .wait_for(timeout=WAIT_MS)
    )
    await page.locator("#plan-name").filter(has_text="Premium").wait_for(timeout=WAIT_MS)
    assert await page.locator("#manage-billing").is_visible()
    assert "Premium" in await page.locator("#upgrade-status").inner_text()
    await viewer.screenshot("upgrade-premium")
    assert viewer.page_errors == []
    assert viewer.csp_violations == []
