"""The watch page's "Pay with mobile money" in a real browser: a viewer watching on the
free plan buys a day pass with an MTN number, sees the pending state (approve on the
phone) and then the confirmation, against the MoMo sandbox-like server and the admin
service's real callback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from admin.app import create_app as create_admin
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.conftest import DEMO_PASSWORD, Film
from tests.e2e.browser import PHONE, WAIT_MS, OpenViewer
from tests.e2e.test_watch_page import assert_clean, sign_in_with_form, wait_playing_past
from tests.integration.helpers import new_email
from tests.support import momo_sandbox as sbx
from tests.support.momo_sandbox import MomoSandbox
from tokens.service.auth import create_account

pytestmark = pytest.mark.slow

SECRET = "callback-secret-e2e"


@pytest.fixture
async def sandbox() -> AsyncIterator[MomoSandbox]:
    server = await MomoSandbox().start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway_url(play_settings: Settings, sandbox: MomoSandbox, aiohttp_server: Any) -> str:
    """The gateway with mobile money configured against the sandbox, and the admin
    service receiving its callbacks (this module's own ``gateway_url``)."""
    settings = dataclasses.replace(
        play_settings,
        mobile_money_env="sandbox",
        mobile_money_timeout_s=5.0,
        mobile_money_callback_secret=SECRET,
        mtn_momo_base_url=sandbox.base,
        mtn_momo_subscription_key=sbx.SUBSCRIPTION_KEY,
        mtn_momo_api_user=sbx.API_USER,
        mtn_momo_api_key=sbx.API_KEY,
    )
    admin = await aiohttp_server(create_admin(settings), host="127.0.0.1")
    settings = dataclasses.replace(
        settings, mobile_money_callback_url=str(admin.make_url("")).rstrip("/")
    )
    server = await aiohttp_server(create_gateway(settings), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


async def test_viewer_pays_a_day_pass_and_sees_pending_then_paid(
    open_viewer: OpenViewer, film: Film, sandbox: MomoSandbox, pg: asyncpg.Connection
) -> None:
    email = new_email()
    await create_account(pg, email, DEMO_PASSWORD)
    viewer = await open_viewer("momo-phone", PHONE)
    page = viewer.page
    await viewer.goto("/")
    await page.click("#signin-button")
    await sign_in_with_form(viewer, email)
    await page.locator("#plan-name").filter(has_text="Free").wait_for(timeout=WAIT_MS)
    await viewer.goto(f"/watch/{film.movie_id}")
    await wait_playing_past(viewer, 1.0)

    panel = page.locator("#momo")
    await panel.wait_for(state="visible", timeout=WAIT_MS)
    await page.click("#momo summary")
    options = await page.locator("#momo-product option").all_inner_texts()
    assert any("Day pass" in o and "1,000 UGX" in o for o in options), options
    await page.select_option("#momo-product", "day_pass")
    await page.fill("#momo-msisdn", "0772 123456")
    await page.click("#momo-pay")
    status = page.locator("#momo-status")
    await status.filter(has_text="Waiting for your approval").wait_for(timeout=WAIT_MS)
    assert await status.get_attribute("data-kind") == "pending"
    assert "until" in await status.inner_text()  # provisional access while pending
    await viewer.screenshot("momo-pending")

    [reference] = list(sandbox.payments)
    payment = await page.evaluate("() => window.kushMomo.state.payment")
    assert payment["payment_id"] == reference
    assert payment["msisdn"] == "+256772123456"
    await sandbox.approve(reference)
    await status.filter(has_text="Paid").wait_for(timeout=WAIT_MS)
    assert await status.get_attribute("data-kind") == "ok"
    await viewer.screenshot("momo-paid")

    # a wrong number is refused with the reason, in the panel
    await page.fill("#momo-msisdn", "0711 234567")
    await page.click("#momo-pay")
    await status.filter(has_text="071").wait_for(timeout=WAIT_MS)
    assert await status.get_attribute("data-kind") == "error"
    assert_clean(viewer)
