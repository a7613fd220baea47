"""Auth flows against the real PostgreSQL and Redis, through the gateway app."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from runtime import db
from runtime.settings import Settings
from tests.integration.helpers import PASSWORD, bearer, new_email, register_and_login
from tokens.keys import parse_master_key
from tokens.service.keystore import rotate_keys
from tokens.service.views import keystore_key


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, login_free_failures=1000, register_limit_per_hour=1000)


@pytest.fixture
async def client(auth_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(auth_settings))


async def test_register_validates_and_normalises(client: TestClient) -> None:
    email = new_email()
    resp = await client.post(
        "/v1/auth/register", json={"email": f"  {email.upper()} ", "password": PASSWORD}
    )
    assert resp.status == 201
    resp = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "email_taken"
    for body, status in (
        ({"email": "not-an-email", "password": PASSWORD}, 422),
        ({"email": new_email(), "password": "short"}, 422),
        ({"email": email.replace("@", "x@"), "password": email.replace("@", "x@")}, 422),
        ({"email": new_email()}, 422),
        ({"email": 5, "password": PASSWORD}, 422),
    ):
        resp = await client.post("/v1/auth/register", json=body)
        assert resp.status == status, body
        assert "error" in await resp.json()
    # login works with the un-normalised spelling
    resp = await client.post("/v1/auth/login", json={"email": email.upper(), "password": PASSWORD})
    assert resp.status == 200


async def test_login_returns_tokens_and_cookies(client: TestClient) -> None:
    body = await register_and_login(client)
    assert set(body) >= {"access_token", "refresh_token", "expires_in", "token_type", "user"}
    assert body["expires_in"] == 900
    assert body["token_type"] == "Bearer"
    header = orjson.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "JWT"
    me = await client.get("/v1/me", headers=bearer(body["access_token"]))
    assert (await me.json())["plan"] == "free"


async def test_web_client_gets_no_refresh_token_in_json(client: TestClient) -> None:
    email = new_email()
    await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    resp = await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "client": "web"}
    )
    body = await resp.json()
    assert "refresh_token" not in body
    cookies = {c.key: c for c in resp.cookies.values()}
    assert cookies["kush_access"]["httponly"]
    assert cookies["kush_refresh"]["httponly"]
    assert cookies["kush_refresh"]["path"] == "/v1/auth"
    assert cookies["kush_access"]["samesite"] == "Lax"
    assert not cookies["kush_csrf"]["httponly"]


async def test_wrong_credentials_same_answer(client: TestClient) -> None:
    body = await register_and_login(client)
    answers = []
    for email, password in ((body["email"], "wrong password!!"), (new_email(), "wrong password!!")):
        resp = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert resp.status == 401
        answers.append((await resp.json())["error"]["message"])
    assert answers[0] == answers[1]


async def test_refresh_rotates_and_reuse_revokes_family(client: TestClient) -> None:
    body = await register_and_login(client)
    first = body["refresh_token"]
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 200
    rotated = await resp.json()
    assert rotated["refresh_token"] != first
    # presenting the used one again: 401 and the whole family dies
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "token_revoked"
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert resp.status == 401
    # access tokens of that login are refused too
    resp = await client.get("/v1/me", headers=bearer(rotated["access_token"]))
    assert resp.status == 401
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": "garbage"})
    assert resp.status == 401


async def test_logout_then_use_is_401_even_after_redis_flush(
    client: TestClient, auth_settings: Settings, redis: Redis
) -> None:
    body = await register_and_login(client)
    token = body["access_token"]
    assert (await client.get("/v1/me", headers=bearer(token))).status == 200
    resp = await client.post("/v1/auth/logout", headers=bearer(token))
    assert resp.status == 204
    assert (await client.get("/v1/me", headers=bearer(token))).status == 401
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert resp.status == 401
    # Redis loses everything (restart/flush): the revocation must not come back to life.
    async for key in redis.scan_iter(match=auth_settings.redis_prefix + "*"):
        await redis.delete(key)
    resp = await client.get("/v1/me", headers=bearer(token))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "token_revoked"


async def test_cookie_auth_needs_csrf_for_state_changes(client: TestClient) -> None:
    email = new_email()
    await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    resp = await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "client": "web"}
    )
    assert resp.status == 200
    # the test client keeps cookies: GET works with the cookie alone
    assert (await client.get("/v1/me")).status == 200
    resp = await client.post("/v1/auth/refresh")
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf_failed"
    csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))["kush_csrf"].value
    resp = await client.post("/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    assert "refresh_token" not in await resp.json()
    resp = await client.post("/v1/auth/logout", headers={"X-CSRF-Token": "wrong"})
    assert resp.status == 403
    resp = await client.post("/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert resp.status == 204


async def test_login_rate_limit_429_with_retry_after(settings: Settings, aiohttp_client) -> None:
    client: TestClient = await aiohttp_client(
        create_app(
            dataclasses.replace(
                settings, login_free_failures=5, redis_prefix=settings.redis_prefix + "rl1:"
            )
        )
    )
    email = new_email()
    statuses = []
    for _ in range(6):
        resp = await client.post(
            "/v1/auth/login", json={"email": email, "password": "nope nope nope"}
        )
        statuses.append(resp.status)
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 2
    assert (await resp.json())["error"]["code"] == "rate_limited"


@pytest.fixture
async def nat_client(settings: Settings, aiohttp_client) -> TestClient:
    """A gateway behind a trusted edge on loopback: X-Forwarded-For picks the address."""
    guarded = dataclasses.replace(
        settings,
        login_free_failures=5,
        login_account_free_failures=8,
        trusted_proxies=("127.0.0.0/8", "::1/128"),
        redis_prefix=settings.redis_prefix + "guard:" + new_email().split("@")[0] + ":",
    )
    return await aiohttp_client(create_app(guarded))


async def _login_from(client: TestClient, address: str, email: str, password: str) -> int:
    resp = await client.post(
        "/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
    )
    return resp.status


async def test_guessing_from_one_address_never_locks_the_owner_elsewhere(
    nat_client: TestClient,
) -> None:
    """Failures count per (account, address): an attacker hammering an account from one
    address is backed off, the owner on another address signs in at once."""
    email = new_email()
    assert (
        await nat_client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status == 201
    attacker = [
        await _login_from(nat_client, "198.51.100.66", email, "wrong guess!") for _ in range(7)
    ]
    assert attacker[:5] == [401] * 5
    assert 429 in attacker[5:]
    assert await _login_from(nat_client, "41.210.7.9", email, PASSWORD) == 200


async def test_carrier_nat_address_is_not_limited_by_successful_logins(
    nat_client: TestClient,
) -> None:
    """Many viewers behind one carrier-NAT address: successes never count."""
    cgnat = "41.210.128.1"
    accounts = []
    for _ in range(3):
        email = new_email()
        await nat_client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
        accounts.append(email)
    statuses = [await _login_from(nat_client, cgnat, accounts[i % 3], PASSWORD) for i in range(12)]
    assert statuses == [200] * 12


async def test_success_resets_the_failure_count(nat_client: TestClient) -> None:
    email = new_email()
    await nat_client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    address = "102.85.4.4"
    for _ in range(2):
        fails = [await _login_from(nat_client, address, email, "typo typo typo") for _ in range(4)]
        assert fails == [401] * 4
        assert await _login_from(nat_client, address, email, PASSWORD) == 200


async def test_distributed_guessing_backs_off_unknown_networks_only(
    nat_client: TestClient,
) -> None:
    """Across addresses the account backs off too, but not for a network that signed in
    before (the owner's usual phone network)."""
    email = new_email()
    await nat_client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    home = "41.75.190.20"
    assert await _login_from(nat_client, home, email, PASSWORD) == 200
    spread = [
        await _login_from(nat_client, f"203.0.113.{i}", email, "wrong guess!") for i in range(8)
    ]
    assert spread == [401] * 8
    assert await _login_from(nat_client, "203.0.114.50", email, PASSWORD) == 429
    assert await _login_from(nat_client, "41.75.190.99", email, PASSWORD) == 200


async def test_register_rate_limit(settings: Settings, aiohttp_client) -> None:
    client: TestClient = await aiohttp_client(
        create_app(
            dataclasses.replace(
                settings, register_limit_per_hour=2, redis_prefix=settings.redis_prefix + "rl2:"
            )
        )
    )
    codes = []
    for _ in range(3):
        resp = await client.post(
            "/v1/auth/register", json={"email": new_email(), "password": PASSWORD}
        )
        codes.append(resp.status)
    assert codes == [201, 201, 429]
    assert int(resp.headers["Retry-After"]) <= 3601


async def test_jwks_and_rotation_with_tokens_in_flight(
    client: TestClient, auth_settings: Settings
) -> None:
    body = await register_and_login(client)
    old_token = body["access_token"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    old_kids = {k["kid"] for k in jwks["keys"]}
    conn = await db.connect(auth_settings)
    try:
        await rotate_keys(conn, parse_master_key(auth_settings.master_key or ""))
    finally:
        await conn.close()
    keystore = client.app[keystore_key]
    assert await keystore.reload()
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    kids = {k["kid"] for k in jwks["keys"]}
    assert old_kids < kids  # the retired key stays published until its tokens expire
    # the token signed before the rotation still works; new tokens use the new key
    assert (await client.get("/v1/me", headers=bearer(old_token))).status == 200
    again = await register_and_login(client)
    new_kid = orjson.loads(base64.urlsafe_b64decode(again["access_token"].split(".")[0] + "=="))[
        "kid"
    ]
    assert new_kid in kids - old_kids


async def test_forged_tokens_refused(client: TestClient) -> None:
    body = await register_and_login(client)
    header_b64, payload_b64, _ = body["access_token"].split(".")
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    public = jwks["keys"][0]["x"].encode()
    unsigned = f"{header_b64}.{payload_b64}"

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    none_header = b64(orjson.dumps({"alg": "none", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}))
    hs_header = b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}))
    hs_sig = b64(hmac.new(public, f"{hs_header}.{payload_b64}".encode(), hashlib.sha256).digest())
    for forged in (
        f"{none_header}.{payload_b64}.",
        f"{hs_header}.{payload_b64}.{hs_sig}",
        unsigned + ".AAAA",
    ):
        resp = await client.get("/v1/me", headers=bearer(forged))
        assert resp.status == 401, forged


async def test_retired_key_leaves_the_jwks_after_its_tokens_expired(
    client: TestClient, auth_settings: Settings
) -> None:
    from tokens.service.views import keystore_key

    conn = await db.connect(auth_settings)
    try:
        await rotate_keys(conn, parse_master_key(auth_settings.master_key or ""))
        retired = await conn.fetchval(
            """SELECT kid FROM signing_keys WHERE purpose = 'jwt' AND retired_at IS NOT NULL
               ORDER BY retired_at DESC LIMIT 1"""
        )
        keystore = client.app[keystore_key]
        await keystore.reload()
        kids = {
            k["kid"] for k in (await (await client.get("/.well-known/jwks.json")).json())["keys"]
        }
        assert retired in kids
        # the last token it signed has expired: the key goes
        await conn.execute(
            "UPDATE signing_keys SET verify_until = now() - interval '1 second' WHERE kid = $1",
            retired,
        )
        assert await keystore.reload()
        kids = {
            k["kid"] for k in (await (await client.get("/.well-known/jwks.json")).json())["keys"]
        }
        assert retired not in kids
    finally:
        await conn.close()
