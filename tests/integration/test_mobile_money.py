"""Mobile money end to end: the gateway's endpoints and the real MTN MoMo / Airtel
clients against a local server that behaves like their sandboxes, the admin service's
callback, the worker's reconciliation, provisional access and passes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_app as create_admin
from admin.billing.jobs import sweep_rechecks
from admin.billing.mobile_money import reconcile
from billing.collections import callback_signature, create_collection_providers
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from runtime.web import pg_key, redis_key, rkeys_key
from tests.integration.conftest import Film
from tests.integration.helpers import PASSWORD, bearer, new_email
from tests.support import momo_sandbox as sbx
from tests.support.momo_sandbox import MomoSandbox
from tokens.service.auth import create_account
from tokens.service.sessions import SessionStore

SECRET = "callback-secret-test"
MTN_NUMBER = "0772 123456"
AIRTEL_NUMBER = "0752123456"
WAIT_S = 5.0


@dataclasses.dataclass
class World:
    gateway: TestClient
    admin: TestClient
    sandbox: MomoSandbox
    settings: Settings
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    async def pay(self, product: str = "day_pass", msisdn: str = MTN_NUMBER, **extra: Any) -> Any:
        return await self.gateway.post(
            "/v1/billing/mobile-money",
            json={"product": product, "msisdn": msisdn, **extra},
            headers=self.headers,
        )

    async def paid(self, product: str = "day_pass", msisdn: str = MTN_NUMBER) -> dict[str, Any]:
        resp = await self.pay(product, msisdn)
        assert resp.status == 202, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def payment(self, payment_id: str) -> dict[str, Any]:
        resp = await self.gateway.get(f"/v1/billing/payments/{payment_id}", headers=self.headers)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def subscription(self) -> dict[str, Any]:
        resp = await self.gateway.get("/v1/billing/subscription", headers=self.headers)
        body: dict[str, Any] = await resp.json()
        return body

    def sessions(self) -> SessionStore:
        app = self.gateway.server.app
        return SessionStore(app[pg_key], app[redis_key], app[rkeys_key])

    async def reconcile(self, now: datetime | None = None) -> dict[str, int]:
        app = self.gateway.server.app
        providers = create_collection_providers(self.settings)
        try:
            return await reconcile(
                app[pg_key],
                self.sessions(),
                self.settings,
                providers,
                now=now,
                user_id=self.user_id,
            )
        finally:
            for provider in providers.values():
                await provider.close()


@pytest.fixture
async def sandbox() -> Any:
    server = await MomoSandbox().start()
    yield server
    await server.stop()


def momo_settings(base: Settings, sandbox: MomoSandbox) -> Settings:
    return dataclasses.replace(
        base,
        mobile_money_env="sandbox",
        mobile_money_timeout_s=1.0,
        mobile_money_callback_secret=SECRET,
        mtn_momo_base_url=sandbox.base,
        mtn_momo_subscription_key=sbx.SUBSCRIPTION_KEY,
        mtn_momo_api_user=sbx.API_USER,
        mtn_momo_api_key=sbx.API_KEY,
        airtel_base_url=sandbox.base,
        airtel_client_id=sbx.AIRTEL_CLIENT_ID,
        airtel_client_secret=sbx.AIRTEL_CLIENT_SECRET,
    )


async def make_world(
    base: Settings, sandbox: MomoSandbox, aiohttp_client: Any, pg: asyncpg.Connection
) -> World:
    settings = momo_settings(base, sandbox)
    admin: TestClient = await aiohttp_client(create_admin(settings))
    callback_base = str(admin.make_url("")).rstrip("/")
    settings = dataclasses.replace(settings, mobile_money_callback_url=callback_base)
    sig = callback_signature(SECRET, "airtel", "")
    sandbox.airtel_callback_url = f"{callback_base}/billing/mobile-money/airtel/callback?sig={sig}"
    gateway: TestClient = await aiohttp_client(create_gateway(settings))
    email = new_email()
    await create_account(pg, email, PASSWORD)
    resp = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    login = await resp.json()
    gateway.session.cookie_jar.clear()  # bearer tokens only: the 401s are tested
    user_id = login["user"]["id"]
    await pg.execute("UPDATE users SET birth_year = 1990 WHERE id = $1::uuid", user_id)
    return World(gateway, admin, sandbox, settings, user_id, login["access_token"])


@pytest.fixture
async def world(
    settings: Settings, sandbox: MomoSandbox, aiohttp_client: Any, pg: asyncpg.Connection
) -> World:
    return await make_world(settings, sandbox, aiohttp_client, pg)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ------------------------------------------------------------------ the happy path


async def test_day_pass_pending_then_confirmed_by_callback(
    world: World, pg: asyncpg.Connection
) -> None:
    before = datetime.now(UTC)
    body = await world.paid("day_pass")
    payment_id = body["payment_id"]
    assert body["status"] == "pending"
    assert body["msisdn"] == "+256772123456"
    assert (body["amount_ugx"], body["currency"], body["provider"]) == (1000, "UGX", "mtn")
    until = parse_time(body["provisional_until"])
    assert timedelta(minutes=9) < until - before < timedelta(minutes=11)

    # what MTN received: a token first, then the request-to-pay with our reference
    [token] = world.sandbox.requests("/collection/token/")
    assert token.headers["Authorization"].startswith("Basic ")
    [request] = world.sandbox.requests("/collection/v1_0/requesttopay")
    assert request.headers["X-Reference-Id"] == payment_id
    assert request.headers["X-Target-Environment"] == "sandbox"
    assert request.headers["Ocp-Apim-Subscription-Key"] == sbx.SUBSCRIPTION_KEY
    assert request.body["payer"] == {"partyIdType": "MSISDN", "partyId": "256772123456"}
    assert (request.body["amount"], request.body["currency"]) == ("1000", "EUR")
    assert request.body["externalId"] == payment_id
    callback = request.headers["X-Callback-Url"]
    assert callback.startswith(f"{world.settings.mobile_money_callback_url}/billing/")
    assert f"ref={payment_id}" in callback

    # provisional access: premium now, ending when the provisional window does
    state = await world.subscription()
    assert (state["plan"], state["provider"], state["next"]["kind"]) == (
        "premium",
        "provisional",
        "provisional_ends",
    )
    # the worker's sweep will recheck the plan when the provisional window ends
    recheck = await pg.fetchrow(
        "SELECT plan_id, recheck_at FROM entitlements WHERE user_id = $1::uuid", world.user_id
    )
    assert (recheck["plan_id"], recheck["recheck_at"]) == ("premium", until)

    await world.sandbox.approve(payment_id)
    assert world.sandbox.callback_replies[-1][0] == 200
    assert world.sandbox.callback_replies[-1][1]["outcome"] == "applied"
    paid = await world.payment(payment_id)
    assert (paid["status"], paid["provisional_until"]) == ("successful", None)
    assert "Paid" in paid["message"]
    state = await world.subscription()
    assert (state["plan"], state["provider"], state["next"]["kind"]) == (
        "premium",
        "mobile_money",
        "pass_ends",
    )
    period = await pg.fetchrow(
        "SELECT starts_at, ends_at, product FROM access_periods WHERE payment_id = $1::uuid",
        payment_id,
    )
    assert period["product"] == "day_pass"
    assert period["ends_at"] - period["starts_at"] == timedelta(days=1)
    revenue = await pg.fetchrow(
        "SELECT provider, amount_minor, currency FROM payments WHERE provider_invoice_id = $1",
        f"mtn:{payment_id}",
    )
    assert tuple(revenue) == ("mtn", 1000, "ugx")
    receipt = await pg.fetchrow(
        "SELECT template, data FROM mail_outbox WHERE user_id = $1::uuid", world.user_id
    )
    assert receipt["template"] == "payment_succeeded"
    assert json.loads(receipt["data"]) == {"amount": "1,000 UGX", "plan_name": "Day pass"}

    # the same callback again, then a late "pending": nothing changes
    assert await world.sandbox.send_callback(payment_id) == 200
    assert world.sandbox.callback_replies[-1][1]["outcome"] == "duplicate"
    assert await world.sandbox.send_callback(payment_id, "PENDING", method="PUT") == 200
    assert world.sandbox.callback_replies[-1][1] == {
        "received": True,
        "outcome": "stale",
        "status": "successful",
    }
    assert await world.sandbox.send_callback(payment_id, "FAILED") == 200
    assert (await world.payment(payment_id))["status"] == "successful"
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM access_periods WHERE payment_id = $1::uuid", payment_id
        )
        == 1
    )


async def test_passes_stack_and_one_provisional_grant_a_day(
    world: World, pg: asyncpg.Connection
) -> None:
    first = await world.paid("week_pass")
    assert first["provisional_until"] is not None
    await world.sandbox.approve(first["payment_id"])
    second = await world.paid("week_pass", "+256 772 123 456")
    assert second["payment_id"] != first["payment_id"]
    assert second["provisional_until"] is None  # the day's grant was used
    assert "starts as soon as it is confirmed" in second["message"]
    await world.sandbox.approve(second["payment_id"])
    periods = await pg.fetch(
        """SELECT starts_at, ends_at FROM access_periods WHERE user_id = $1::uuid
            ORDER BY starts_at""",
        world.user_id,
    )
    assert len(periods) == 2
    assert periods[1]["starts_at"] == periods[0]["ends_at"]  # stacked after the first
    assert periods[1]["ends_at"] - periods[0]["starts_at"] == timedelta(days=14)


async def test_a_double_tap_reuses_the_pending_payment(world: World) -> None:
    first = await world.paid("day_pass")
    again = await world.paid("day_pass", "+256772123456")
    assert again["payment_id"] == first["payment_id"]
    assert len(world.sandbox.requests("/collection/v1_0/requesttopay")) == 1


async def test_airtel_money_pass_confirmed_by_its_callback(world: World) -> None:
    body = await world.paid("day_pass", AIRTEL_NUMBER)
    assert body["provider"] == "airtel"
    [request] = world.sandbox.requests("/merchant/v1/payments/")
    assert request.headers["X-Country"] == "UG"
    assert request.headers["X-Currency"] == "UGX"
    assert request.body["subscriber"]["msisdn"] == "752123456"
    assert request.body["transaction"]["id"] == body["payment_id"]
    assert request.body["transaction"]["amount"] == 1000
    await world.sandbox.approve(body["payment_id"])
    assert world.sandbox.callback_replies[-1][0] == 200
    assert (await world.payment(body["payment_id"]))["status"] == "successful"


# ------------------------------------------------------------------ missing callbacks


async def test_callback_never_sent_the_worker_asks_and_settles(world: World) -> None:
    world.sandbox.callbacks = False
    body = await world.paid("day_pass")
    payment_id = body["payment_id"]
    await world.sandbox.approve(payment_id)  # approved, but MTN never calls back
    assert world.sandbox.callback_replies == []
    assert (await world.payment(payment_id))["status"] == "pending"
    # not due yet: the first status query waits for the callback
    assert await world.reconcile() == {}
    counts = await world.reconcile(now=datetime.now(UTC) + timedelta(minutes=1))
    assert counts == {"successful": 1}
    assert (await world.payment(payment_id))["status"] == "successful"
    status_calls = [
        c for c in world.sandbox.calls if c.path.endswith(f"/requesttopay/{payment_id}")
    ]
    assert len(status_calls) == 1


async def test_never_approved_expires_and_access_ends(world: World, pg: asyncpg.Connection) -> None:
    world.sandbox.callbacks = False
    body = await world.paid("day_pass")
    payment_id = body["payment_id"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await world.reconcile(now=later) == {"pending": 1}  # still pending at MTN
    expiry = datetime.now(UTC) + timedelta(minutes=world.settings.mobile_money_expire_minutes + 1)
    assert await world.reconcile(now=expiry) == {"expired": 1}
    payment = await world.payment(payment_id)
    assert (payment["status"], payment["provisional_until"]) == ("expired", None)
    assert (await world.subscription())["plan"] == "free"
    # MTN confirms after all (the money was taken): the pass is delivered
    await world.sandbox.approve(payment_id)
    assert await world.sandbox.send_callback(payment_id) == 200
    assert (await world.payment(payment_id))["status"] == "successful"
    assert (await world.subscription())["plan"] == "premium"


# ------------------------------------------------------------------ failure ends access


def local(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def refused_with(gateway: TestClient, url: str) -> tuple[int, str]:
    deadline = time.monotonic() + WAIT_S
    while True:
        resp = await gateway.get(url)
        if resp.status != 200 or time.monotonic() > deadline:
            break
        await resp.read()
        await asyncio.sleep(0.1)
    code = (await resp.json())["error"]["code"] if resp.status != 200 else ""
    return resp.status, code


async def hd_session(world: World, film: Film) -> tuple[str, str]:
    """A premium (1080p) playback session; returns its id and a 1080p segment path."""
    resp = await world.gateway.post(f"/v1/playback/{film.movie_id}", headers=world.headers)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    master = await (await world.gateway.get(local(body["manifest_url"]))).text()
    assert max(int(h) for h in re.findall(r"RESOLUTION=\d+x(\d+)", master)) == 1080
    variant = next(line for line in master.splitlines() if line.startswith("1080p/"))
    media = await (await world.gateway.get(f"/hls/{film.movie_id}/{variant}")).text()
    first = next(line for line in media.splitlines() if line and not line.startswith("#"))
    url = f"/hls/{film.movie_id}/1080p/{first}"
    assert (await world.gateway.get(url)).status == 200
    return body["session_id"], url


async def test_declined_payment_ends_provisional_access_and_live_sessions(
    play_settings: Settings,
    film: Film,
    sandbox: MomoSandbox,
    aiohttp_client: Any,
    pg: asyncpg.Connection,
) -> None:
    world = await make_world(play_settings, sandbox, aiohttp_client, pg)
    body = await world.paid("day_pass")
    session_id, hd = await hd_session(world, film)  # watching at once, provisionally
    await world.sandbox.decline(body["payment_id"], "APPROVAL_REJECTED")
    assert world.sandbox.callback_replies[-1][1]["status"] == "failed"
    payment = await world.payment(body["payment_id"])
    assert (payment["status"], payment["reason"]) == ("failed", "APPROVAL_REJECTED")
    assert await refused_with(world.gateway, hd) == (403, "payment_not_confirmed")
    reason = await pg.fetchval(
        "SELECT ended_reason FROM playback_sessions WHERE id = $1", session_id
    )
    assert reason == "payment_not_confirmed"
    assert (await world.subscription())["plan"] == "free"


async def test_provisional_window_over_while_pending_ends_access(
    play_settings: Settings,
    film: Film,
    sandbox: MomoSandbox,
    aiohttp_client: Any,
    pg: asyncpg.Connection,
) -> None:
    world = await make_world(play_settings, sandbox, aiohttp_client, pg)
    body = await world.paid("day_pass")
    session_id, hd = await hd_session(world, film)
    # the viewer has not approved after KUSH_PROVISIONAL_MINUTES: move the clock
    await pg.execute(
        """UPDATE mobile_money_payments SET provisional_until = now() - interval '1 second'
            WHERE id = $1::uuid""",
        body["payment_id"],
    )
    await pg.execute(
        "UPDATE entitlements SET recheck_at = now() - interval '1 second' WHERE user_id = $1::uuid",
        world.user_id,
    )
    changes = await sweep_rechecks(
        world.gateway.server.app[pg_key], world.sessions(), world.settings
    )
    assert [(c.old, c.new) for c in changes if c.user_id == world.user_id] == [("premium", "free")]
    assert await refused_with(world.gateway, hd) == (403, "payment_not_confirmed")
    assert (await world.payment(body["payment_id"]))["status"] == "pending"
    del session_id


# ------------------------------------------------------------------ refusals


async def test_input_errors_say_why(world: World, pg: asyncpg.Connection) -> None:
    resp = await world.gateway.post(
        "/v1/billing/mobile-money", json={"product": "day_pass", "msisdn": MTN_NUMBER}
    )
    assert resp.status == 401
    cases = [
        ({"product": "gold", "msisdn": MTN_NUMBER}, "unknown_product", "day_pass"),
        ({"product": "free", "msisdn": MTN_NUMBER}, "unknown_product", "week_pass"),
        ({"product": "day_pass", "msisdn": "0711234567"}, "invalid_msisdn", "071"),
        ({"product": "day_pass", "msisdn": "12345"}, "invalid_msisdn", "10 digits"),
        (
            {"product": "day_pass", "msisdn": AIRTEL_NUMBER, "provider": "mtn"},
            "wrong_operator",
            "Airtel number",
        ),
        (
            {"product": "day_pass", "msisdn": MTN_NUMBER, "provider": "airtel"},
            "wrong_operator",
            "MTN number",
        ),
        ({"product": "day_pass"}, "invalid_request", ""),
        ({"product": "day\u0000pass", "msisdn": MTN_NUMBER}, "invalid_request", ""),
        ({"product": "day_pass", "msisdn": "0772\u0000123456"}, "invalid_msisdn", ""),
        ({"product": "day_pass", "msisdn": MTN_NUMBER, "provider": "mpesa"}, "invalid_request", ""),
    ]
    for body, code, words in cases:
        resp = await world.gateway.post(
            "/v1/billing/mobile-money", json=body, headers=world.headers
        )
        assert resp.status == 422, (body, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == code, body
        assert words in error["message"], error
    assert world.sandbox.calls == []
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM mobile_money_payments WHERE user_id = $1::uuid", world.user_id
        )
        == 0
    )


async def test_payments_are_visible_to_their_owner_only(
    world: World, pg: asyncpg.Connection
) -> None:
    body = await world.paid("day_pass")
    email = new_email()
    await create_account(pg, email, PASSWORD)
    other = await (
        await world.gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    world.gateway.session.cookie_jar.clear()
    path = f"/v1/billing/payments/{body['payment_id']}"
    resp = await world.gateway.get(path, headers=bearer(other["access_token"]))
    assert resp.status == 404
    assert (await world.gateway.get(path)).status == 401
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        resp = await world.gateway.get(f"/v1/billing/payments/{bad}", headers=world.headers)
        assert resp.status == 404


async def test_forged_or_unknown_callbacks_change_nothing(world: World) -> None:
    body = await world.paid("day_pass")
    payment_id = body["payment_id"]
    ok = callback_signature(SECRET, "mtn", payment_id)
    report = world.sandbox.callback_body(payment_id, "SUCCESSFUL")
    base = "/billing/mobile-money/mtn/callback"
    cases = [
        (f"{base}?ref={payment_id}&sig={'0' * 64}", report, 400),  # wrong signature
        (f"{base}?ref={payment_id}", report, 400),  # none
        (f"{base}?ref={payment_id}&sig=%C3%A9%00", report, 400),  # not even ASCII
        (f"{base}?ref={uuid.uuid4()}&sig={ok}", report, 400),  # another reference
        ("/billing/mobile-money/mpesa/callback", report, 404),
        (f"{base}?ref={payment_id}&sig={ok}", {"status": "SUCCESSFUL"}, 400),
    ]
    other = str(uuid.uuid4())
    cases.append(
        (
            f"{base}?ref={other}&sig={callback_signature(SECRET, 'mtn', other)}",
            {**report, "externalId": other},
            404,
        )
    )
    for url, payload, status in cases:
        resp = await world.admin.post(url, json=payload)
        assert resp.status == status, (url, await resp.text())
    resp = await world.admin.post(f"{base}?ref={payment_id}&sig={ok}", data=b"{")
    assert resp.status == 400
    assert (await world.payment(payment_id))["status"] == "pending"


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_provider_down_is_503_and_the_payment_waits_for_the_worker(
    world: World, pg: asyncpg.Connection, mode: str
) -> None:
    world.sandbox.mode = mode
    resp = await asyncio.wait_for(world.pay("day_pass"), timeout=30)
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"]["code"] == "billing_unavailable"
    row = await pg.fetchrow(
        "SELECT status, provisional_until FROM mobile_money_payments WHERE user_id = $1::uuid",
        world.user_id,
    )
    assert (row["status"], row["provisional_until"]) == ("pending", None)
    assert (await world.subscription())["plan"] == "free"


async def test_without_credentials_mobile_money_says_how_to_configure(
    settings: Settings, aiohttp_client: Any, pg: asyncpg.Connection
) -> None:
    gateway: TestClient = await aiohttp_client(create_gateway(settings))
    email = new_email()
    await create_account(pg, email, PASSWORD)
    login = await (
        await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    resp = await gateway.post(
        "/v1/billing/mobile-money",
        json={"product": "day_pass", "msisdn": MTN_NUMBER},
        headers=bearer(login["access_token"]),
    )
    assert resp.status == 503
    error = (await resp.json())["error"]
    assert error["code"] == "billing_not_configured"
    assert "KUSH_MTN_MOMO_" in error["message"]
    products = await (await gateway.get("/v1/billing/mobile-money/products")).json()
    assert products["providers"] == []
    assert {p["id"]: p["amount_ugx"] for p in products["products"]} == {
        "day_pass": 1000,
        "week_pass": 5000,
        "basic": 10000,
        "premium": 18000,
    }


async def test_mobile_money_replies_fit_the_openapi_documents(world: World) -> None:
    from tests.integration.test_openapi import ADMIN_DOC, PUBLIC_DOC, check_reply, document

    doc = await document(world.gateway, PUBLIC_DOC)
    resp = await world.pay("day_pass")
    body = await resp.json()
    check_reply(doc, "/v1/billing/mobile-money", "post", 202, body)
    payment = await world.payment(body["payment_id"])
    check_reply(doc, "/v1/billing/payments/{payment_id}", "get", 200, payment)
    resp = await world.pay("day_pass", "0711234567")
    check_reply(doc, "/v1/billing/mobile-money", "post", 422, await resp.json())
    check_reply(doc, "/v1/billing/subscription", "get", 200, await world.subscription())
    admin_doc = await document(world.admin, ADMIN_DOC)
    await world.sandbox.approve(body["payment_id"])
    status, reply = world.sandbox.callback_replies[-1]
    check_reply(admin_doc, "/billing/mobile-money/{provider}/callback", "post", status, reply)


async def test_the_paying_number_is_exported_and_erased(
    world: World, pg: asyncpg.Connection
) -> None:
    from tokens.service.privacy import erase_user
    from tokens.service.views import auth_key

    body = await world.paid("day_pass")
    export = await (await world.gateway.get("/v1/me/export", headers=world.headers)).json()
    [payment] = export["mobile_money_payments"]
    assert (payment["id"], payment["msisdn"], payment["status"]) == (
        body["payment_id"],
        "+256772123456",
        "pending",
    )
    app = world.gateway.server.app
    await erase_user(app[auth_key], app[redis_key], app[rkeys_key], world.user_id)
    row = await pg.fetchrow(
        "SELECT msisdn, amount_ugx FROM mobile_money_payments WHERE id = $1::uuid",
        body["payment_id"],
    )
    assert (row["msisdn"], row["amount_ugx"]) == (None, 1000)  # kept, without the number
    # the provider may still call back about it: applied, and nothing breaks
    await world.sandbox.approve(body["payment_id"])
    assert world.sandbox.callback_replies[-1][1]["status"] == "successful"
