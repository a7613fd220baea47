"""HTTP views of the auth service, mounted in the gateway (DESIGN.md "Interfaces").

Browsers and native players both work: login returns the tokens in JSON *and* sets
httpOnly cookies. A browser page passes ``"client": "web"`` and then never sees the
refresh token (it lives only in its httpOnly cookie). Cookie-authenticated
state-changing requests need the double-submit CSRF header ``X-CSRF-Token`` equal to
the ``kush_csrf`` cookie; bearer-authenticated requests do not (a cross-site page
cannot set an Authorization header).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from runtime import ratelimit
from runtime.errors import BadRequest, Forbidden, Unauthorized
from runtime.net import client_ip
from runtime.settings import Settings
from runtime.web import json_response, pg_key, read_json, redis_key, rkeys_key, settings_key
from tokens.errors import TokenError
from tokens.jwt import ACCESS_TOKEN_TTL_S, AccessClaims
from tokens.keys import parse_master_key
from tokens.passwords import dummy_verify
from tokens.service.auth import REFRESH_TTL_S, AuthService, IssuedTokens, subject_key
from tokens.service.keystore import KeyStore
from tokens.service.login_guard import LoginGuard, LoginLimits

auth_key = web.AppKey("auth", AuthService)
keystore_key = web.AppKey("keystore", KeyStore)
claims_key = web.RequestKey("claims", AccessClaims)

ACCESS_COOKIE = "kush_access"
REFRESH_COOKIE = "kush_refresh"
CSRF_COOKIE = "kush_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFRESH_COOKIE_PATH = "/v1/auth"


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: signing keys (refreshed in the background) and the auth service."""
    settings = app[settings_key]
    store = KeyStore(app[pg_key], parse_master_key(settings.resolve_master_key()))
    await store.start()
    dummy_verify("")  # build the dummy hash now, not during someone's login
    app[keystore_key] = store
    app[auth_key] = AuthService(
        pool=app[pg_key], redis=app[redis_key], keys=app[rkeys_key], keystore=store
    )
    yield
    await store.stop()


async def require_role(request: web.Request, roles: frozenset[str]) -> AccessClaims:
    """Authenticate and check the caller's role (403 ``forbidden_role`` otherwise)."""
    claims = await authenticate(request)
    if claims.role not in roles:
        raise Forbidden("Your role may not do this", code="forbidden_role")
    return claims


def _string_field(body: dict[str, Any], name: str, *, max_len: int = 1024) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' is required and must be a string", code="invalid_request")
    if len(value) > max_len:
        raise BadRequest(f"'{name}' is too long", code="invalid_request")
    return value


async def authenticate(request: web.Request) -> AccessClaims:
    """The caller's verified claims, from ``Authorization: Bearer`` or the access cookie.

    Cached on the request. Cookie auth on a state-changing method needs the CSRF header.
    """
    cached: AccessClaims | None = request.get(claims_key)
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    token: str | None = None
    via_cookie = False
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Use 'Authorization: Bearer <token>'", code="invalid_token")
        token = value.strip()
    else:
        token = request.cookies.get(ACCESS_COOKIE)
        via_cookie = token is not None
    if not token:
        raise Unauthorized(
            "Sign in first", code="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )
    if via_cookie and request.method not in SAFE_METHODS:
        check_csrf(request)
    try:
        claims = await request.app[auth_key].authenticate(token)
    except TokenError as err:
        raise Unauthorized(
            str(err) or "Invalid token", code=err.code, headers={"WWW-Authenticate": "Bearer"}
        ) from err
    request[claims_key] = claims
    return claims


def check_csrf(request: web.Request) -> None:
    """Double-submit check: the header must equal the CSRF cookie (constant time)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise Forbidden("Missing or wrong CSRF token", code="csrf_failed")


def _rate_subject(request: web.Request) -> str:
    return client_ip(request, request.app[settings_key].trusted_proxies)


def _token_response(
    request: web.Request, issued: IssuedTokens, *, web_client: bool, status: int = 200
) -> web.Response:
    settings: Settings = request.app[settings_key]
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "token_type": "Bearer",
        "user": {
            "id": issued.claims.sub,
            "email": issued.claims.email,
            "role": issued.claims.role,
            "plan": issued.claims.plan,
        },
    }
    if not web_client:
        body["refresh_token"] = issued.refresh_token
    resp = json_response(body, status=status, headers={"Cache-Control": "no-store"})
    secure = settings.cookie_secure
    resp.set_cookie(
        ACCESS_COOKIE,
        issued.access_token,
        max_age=ACCESS_TOKEN_TTL_S,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
    )
    resp.set_cookie(
        REFRESH_COOKIE,
        issued.refresh_token,
        max_age=REFRESH_TTL_S,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path=REFRESH_COOKIE_PATH,
    )
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    resp.set_cookie(
        CSRF_COOKIE, csrf, max_age=REFRESH_TTL_S, secure=secure, samesite="Lax", path="/"
    )
    return resp


async def register(request: web.Request) -> web.Response:
    """POST /v1/auth/register {email, password} -> 201."""
    app = request.app
    settings = app[settings_key]
    await ratelimit.hit(
        app[redis_key],
        app[rkeys_key],
        "register",
        _rate_subject(request),
        limit=settings.register_limit_per_hour,
        window_s=3600,
    )
    body = await read_json(request)
    user_id = await app[auth_key].register(
        _string_field(body, "email"), _string_field(body, "password")
    )
    return json_response({"id": user_id}, status=201)


async def login(request: web.Request) -> web.Response:
    """POST /v1/auth/login {email, password, client?} -> tokens + cookies."""
    app = request.app
    settings = app[settings_key]
    body = await read_json(request)
    email = _string_field(body, "email", max_len=320)
    password = _string_field(body, "password")
    client = body.get("client", "api")
    if not isinstance(client, str):
        raise BadRequest("'client' must be a string", code="invalid_request")
    guard = LoginGuard(
        app[redis_key],
        app[rkeys_key],
        LoginLimits(
            free=settings.login_free_failures,
            account_free=settings.login_account_free_failures,
            address_failures_per_minute=settings.login_ip_failures_per_minute,
        ),
    )
    account, address = subject_key(email), _rate_subject(request)
    await guard.check(account, address)
    try:
        issued = await app[auth_key].login(email, password, client=client)
    except Unauthorized:
        await guard.failed(account, address)
        raise
    await guard.succeeded(account, address)
    return _token_response(request, issued, web_client=client == "web")


async def refresh(request: web.Request) -> web.Response:
    """POST /v1/auth/refresh {refresh_token} (or the refresh cookie) -> rotated tokens."""
    body: dict[str, Any] = {}
    if request.can_read_body:
        body = await read_json(request)
    token = body.get("refresh_token")
    web_client = body.get("client") == "web"
    if token is None:
        token = request.cookies.get(REFRESH_COOKIE)
        if token is not None:
            check_csrf(request)
            web_client = True
    if not isinstance(token, str) or not token:
        raise Unauthorized("A refresh token is required", code="invalid_token")
    try:
        issued = await request.app[auth_key].refresh(token)
    except TokenError as err:
        resp_err = Unauthorized(str(err) or "Invalid refresh token", code=err.code)
        raise resp_err from err
    return _token_response(request, issued, web_client=web_client)


async def logout(request: web.Request) -> web.Response:
    """POST /v1/auth/logout -> 204; the access token and its login are revoked."""
    claims = await authenticate(request)
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if request.can_read_body:
        body = await read_json(request)
        given = body.get("refresh_token")
        if isinstance(given, str):
            refresh_token = given
    await request.app[auth_key].logout(claims, refresh_token)
    resp = web.Response(status=204)
    for name, path in (
        (ACCESS_COOKIE, "/"),
        (REFRESH_COOKIE, REFRESH_COOKIE_PATH),
        (CSRF_COOKIE, "/"),
    ):
        resp.del_cookie(name, path=path)
    return resp


async def me(request: web.Request) -> web.Response:
    """GET /v1/me -> who the token says you are."""
    claims = await authenticate(request)
    return json_response(
        {"id": claims.sub, "email": claims.email, "role": claims.role, "plan": claims.plan},
        headers={"Cache-Control": "no-store"},
    )


async def jwks_view(request: web.Request) -> web.Response:
    """GET /.well-known/jwks.json -> the public keys that verify access tokens."""
    return json_response(
        request.app[keystore_key].keys.jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


def setup_routes(app: web.Application) -> None:
    """Mount the auth endpoints."""
    app.router.add_post("/v1/auth/register", register)
    app.router.add_post("/v1/auth/login", login)
    app.router.add_post("/v1/auth/refresh", refresh)
    app.router.add_post("/v1/auth/logout", logout)
    app.router.add_get("/v1/me", me)
    app.router.add_get("/.well-known/jwks.json", jwks_view)
