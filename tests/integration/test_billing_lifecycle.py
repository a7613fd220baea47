"""The subscription lifecycle as the gateway enforces it: free -> checkout completed ->
premium playback (1080p) -> payment failed -> grace -> free (1080p gone from new masters,
a live premium session's next 1080p segment refused with ``plan_changed``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from admin.billing.jobs import sweep_rechecks
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from runtime.web import pg_key, redis_key, rkeys_key
from tests.integration.conftest import Film
from tests.integration.helpers import PASSWORD, bearer, new_email
from tests.support.stripe_api import checkout_obj, event, invoice_obj, sign
from tokens.service.auth import create_account
from tokens.service.sessions import SessionStore

SECRET = "whsec_test_lifecycle"
PRICE_PREMIUM = "price_premium_test"
WAIT_S = 5.0  # the documented bound is 1 s (session cache 0.5 s per worker)


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


def settings_with(play_settings: Settings, grace_hours: int) -> Settings:
    return dataclasses.replace(
        play_settings,
        stripe_webhook_secret=SECRET,
        stripe_price_premium=PRICE_PREMIUM,
        stripe_price_basic="price_basic_test",
        billing_grace_hours=grace_hours,
    )


@dataclasses.dataclass
class World:
    gateway: TestClient
    admin: TestClient
    user_id: str
    token: str
    customer: str
    sub_id: str


async def make_world(settings: Settings, aiohttp_client: Any, pg: asyncpg.Connection) -> World:
    gateway = await aiohttp_client(create_gateway(settings))
    admin = await aiohttp_client(create_admin(settings))
    account = await new_account(gateway, pg)
    user_id = account["user"]["id"]
    await pg.execute("UPDATE users SET birth_year = 1990 WHERE id = $1::uuid", user_id)
    customer = f"cus_{secrets.token_hex(6)}"
    await pg.execute(
        "UPDATE users SET stripe_customer_id = $2 WHERE id = $1::uuid", user_id, customer
    )
    return World(
        gateway, admin, user_id, account["access_token"], customer, f"sub_{secrets.token_hex(6)}"
    )


async def webhook(w: World, evt: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(evt)
    resp = await w.admin.post(
        "/billing/stripe/webhook", data=payload, headers={"Stripe-Signature": sign(payload, SECRET)}
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def local(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def heights(master: str) -> list[int]:
    return [int(h) for h in re.findall(r"RESOLUTION=\d+x(\d+)", master)]


async def play(w: World, film: Film) -> tuple[dict[str, Any], str]:
    resp = await w.gateway.post(f"/v1/playback/{film.movie_id}", headers=bearer(w.token))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    master = await (await w.gateway.get(local(body["manifest_url"]))).text()
    return body, master


async def segment_url(w: World, film: Film, master: str, rendition: str) -> str:
    variant = next(line for line in master.splitlines() if line.startswith(f"{rendition}/"))
    media = await (await w.gateway.get(f"/hls/{film.movie_id}/{variant}")).text()
    first = next(line for line in media.splitlines() if line and not line.startswith("#"))
    return f"/hls/{film.movie_id}/{rendition}/{first}"


async def refused_with(w: World, url: str) -> tuple[int, str]:
    """Fetch ``url`` until it is refused (the gateway workers' session cache lives 0.5 s);
    returns the last status and error code."""
    deadline = time.monotonic() + WAIT_S
    while True:
        resp = await w.gateway.get(url)
        if resp.status != 200 or time.monotonic() > deadline:
            break
        await resp.read()
        await asyncio.sleep(0.1)
    code = (await resp.json())["error"]["code"] if resp.status != 200 else ""
    return resp.status, code


async def test_free_checkout_premium_payment_failed_free(
    play_settings: Settings, film: Film, aiohttp_client: Any, pg: asyncpg.Connection
) -> None:
    w = await make_world(settings_with(play_settings, grace_hours=0), aiohttp_client, pg)
    free, master = await play(w, film)
    assert max(heights(master)) == 480
    await w.gateway.delete(f"/v1/playback/{free['session_id']}", headers=bearer(w.token))

    t0 = int(time.time()) - 10  # events are created before they are delivered
    await webhook(
        w,
        event(
            "checkout.session.completed",
            checkout_obj(w.user_id, w.customer, w.sub_id, "premium"),
            created=t0,
        ),
    )
    premium, master = await play(w, film)
    assert max(heights(master)) == 1080
    hd = await segment_url(w, film, master, "1080p")
    assert (await w.gateway.get(hd)).status == 200

    failed = invoice_obj(
        "in_" + secrets.token_hex(5), w.customer, w.sub_id, PRICE_PREMIUM, paid=False
    )
    body = await webhook(w, event("invoice.payment_failed", failed, created=t0 + 1))
    assert body["outcome"] == "applied"
    row = await pg.fetchrow(
        "SELECT status, past_due_since FROM subscriptions WHERE user_id = $1::uuid", w.user_id
    )
    assert row["status"] == "past_due"
    assert row["past_due_since"] is not None
    # no grace (0 h): the plan is free at once, and the live premium session has ended
    status, code = await refused_with(w, hd)
    assert (status, code) == (403, "plan_changed")
    ended = await pg.fetchrow(
        "SELECT ended_at, ended_reason FROM playback_sessions WHERE id = $1", premium["session_id"]
    )
    assert ended["ended_reason"] == "plan_changed"
    assert ended["ended_at"] is not None

    again, master = await play(w, film)
    assert max(heights(master)) == 480
    assert "1080p/" not in master
    state = await (await w.gateway.get("/v1/billing/subscription", headers=bearer(w.token))).json()
    assert (state["plan"], state["next"]["kind"]) == ("free", "none")
    mails = await pg.fetch(
        "SELECT template FROM mail_outbox WHERE user_id = $1::uuid ORDER BY id", w.user_id
    )
    assert [m["template"] for m in mails] == ["welcome", "payment_failed"]
    await w.gateway.delete(f"/v1/playback/{again['session_id']}", headers=bearer(w.token))


async def test_grace_keeps_the_plan_until_the_sweep_finds_it_over(
    play_settings: Settings, film: Film, aiohttp_client: Any, pg: asyncpg.Connection
) -> None:
    settings = settings_with(play_settings, grace_hours=72)
    w = await make_world(settings, aiohttp_client, pg)
    t0 = int(time.time()) - 10  # events are created before they are delivered
    await webhook(
        w,
        event(
            "checkout.session.completed",
            checkout_obj(w.user_id, w.customer, w.sub_id, "premium"),
            created=t0,
        ),
    )
    failed = invoice_obj(
        "in_" + secrets.token_hex(5), w.customer, w.sub_id, PRICE_PREMIUM, paid=False
    )
    await webhook(w, event("invoice.payment_failed", failed, created=t0 + 1))
    _premium, master = await play(w, film)
    assert max(heights(master)) == 1080  # past_due, within the grace period
    hd = await segment_url(w, film, master, "1080p")
    assert (await w.gateway.get(hd)).status == 200
    recheck = await pg.fetchval(
        "SELECT recheck_at FROM entitlements WHERE user_id = $1::uuid", w.user_id
    )
    assert recheck is not None

    # move the clock: the failure happened 73 hours ago
    await pg.execute(
        """UPDATE subscriptions SET past_due_since = now() - interval '73 hours'
            WHERE user_id = $1::uuid""",
        w.user_id,
    )
    await pg.execute(
        "UPDATE entitlements SET recheck_at = now() - interval '1 hour' WHERE user_id = $1::uuid",
        w.user_id,
    )
    app = w.gateway.server.app
    sessions = SessionStore(app[pg_key], app[redis_key], app[rkeys_key])
    changes = await sweep_rechecks(app[pg_key], sessions, settings)
    mine = [c for c in changes if c.user_id == w.user_id]
    assert [(c.old, c.new) for c in mine] == [("premium", "free")]
    status, code = await refused_with(w, hd)
    assert (status, code) == (403, "plan_changed")
    again, master = await play(w, film)
    assert max(heights(master)) == 480
    await w.gateway.delete(f"/v1/playback/{again['session_id']}", headers=bearer(w.token))
    # a second sweep finds nothing more to do
    assert [
        c for c in await sweep_rechecks(app[pg_key], sessions, settings) if c.user_id == w.user_id
    ] == []
