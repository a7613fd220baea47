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
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from runtime import ratelimit
from runtime.api import (
    BodyModel,
    ReplyModel,
    Routes,
    UuidStr,
    omitted_when_none,
    parse_body,
)
from runtime.errors import Forbidden, Unauthorized
from runtime.net import client_ip
from runtime.settings import Settings
from runtime.web import json_response, metrics_key, pg_key, redis_key, rkeys_key, settings_key
from tokens.errors import TokenError
from tokens.jwt import ACCESS_TOKEN_TTL_S, AccessClaims, Plan, Role
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

#: How callers authenticate, as OpenAPI security schemes (``runtime.api``).
SECURITY_SCHEMES: Mapping[str, Mapping[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from login or refresh: `Authorization: Bearer <token>`",
    },
    "access_cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": ACCESS_COOKIE,
        "description": f"The httpOnly access cookie set by login (browsers). POST, PUT, "
        f"PATCH and DELETE also need the `{CSRF_HEADER}` header equal to the "
        f"`{CSRF_COOKIE}` cookie.",
    },
    "refresh_cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": REFRESH_COOKIE,
        "description": f"The httpOnly refresh cookie (path `{REFRESH_COOKIE_PATH}`), with "
        f"the `{CSRF_HEADER}` header equal to the `{CSRF_COOKIE}` cookie.",
    },
}
#: A signed-in caller: a bearer token or the access cookie.
SIGNED_IN = ("bearer", "access_cookie")

routes = Routes(tags=("auth",))

# ------------------------------------------------------------------ models

Password = Annotated[str, Field(min_length=1, max_length=1024)]


class Registration(BodyModel):
    """A new account."""

    email: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Normalised (trimmed, lower-cased) and checked"
    )
    password: Password = Field(description="At least 10 characters, not the email")


class Credentials(BodyModel):
    """Email and password, and which kind of client logs in."""

    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Password
    client: str = Field(
        default="api",
        description="`web` for a browser page: the refresh token is then only in its "
        "httpOnly cookie, never in the JSON",
    )


class RefreshRequest(BodyModel):
    """The refresh token, unless the refresh cookie is sent instead."""

    refresh_token: str | None = Field(default=None, description="From login or refresh")
    client: str | None = Field(default=None, description="`web`: no refresh token in the JSON")


class LogoutRequest(BodyModel):
    """Optionally the refresh token of the login to end (else the refresh cookie's)."""

    refresh_token: str | None = None


class Registered(ReplyModel):
    """The new account."""

    id: UuidStr


class User(ReplyModel):
    """Who the token says you are."""

    id: UuidStr
    email: str
    role: Role
    plan: Plan


class Tokens(ReplyModel):
    """A fresh access token (and refresh token) for the user; cookies are set too."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    access_token: str = Field(description="A JWT (EdDSA); send as `Authorization: Bearer`")
    expires_in: int = Field(description="Seconds the access token is valid")
    token_type: Literal["Bearer"]
    user: User
    refresh_token: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Single use, rotated by refresh; absent for web clients",
        json_schema_extra=omitted_when_none,
    )


class Jwk(ReplyModel):
    """One Ed25519 verification key (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class JwkSet(ReplyModel):
    """The public keys that verify access tokens."""

    keys: list[Jwk]


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: signing keys (refreshed in the background) and the auth service."""
    settings = app[settings_key]
    store = KeyStore(app[pg_key], parse_master_key(settings.resolve_master_key()))
    await store.start()
    dummy_verify("")  # build the dummy hash now, not during someone's login
    app[keystore_key] = store
    app[auth_key] = AuthService(
        pool=app[pg_key],
        redis=app[redis_key],
        keys=app[rkeys_key],
        keystore=store,
        grace=timedelta(hours=settings.billing_grace_hours),
    )
    yield
    await store.stop()


async def require_role(request: web.Request, roles: frozenset[str]) -> AccessClaims:
    """Authenticate and check the caller's role (403 ``forbidden_role`` otherwise)."""
    claims = await authenticate(request)
    if claims.role not in roles:
        raise Forbidden("Your role may not do this", code="forbidden_role")
    return claims


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
            request.app[metrics_key].reject_token("access", "invalid_token")
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
        request.app[metrics_key].reject_token("access", err.code)
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
    body = Tokens(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        token_type="Bearer",  # noqa: S106 (a token type, not a password)
        user=_user(issued.claims),
        refresh_token=None if web_client else issued.refresh_token,
    )
    resp = json_response(
        body.model_dump(exclude_none=True), status=status, headers={"Cache-Control": "no-store"}
    )
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


def _user(claims: AccessClaims) -> User:
    return User(id=claims.sub, email=claims.email, role=claims.role, plan=claims.plan)


@routes.post(
    "/v1/auth/register",
    summary="Create an account",
    body=Registration,
    replies={201: Registered},
    errors={409: "The email is taken (`email_taken`)", 429: "Too many sign-ups from here"},
)
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
    body = await parse_body(request, Registration)
    user_id = await app[auth_key].register(body.email, body.password)
    return json_response(Registered(id=user_id), status=201)


@routes.post(
    "/v1/auth/login",
    summary="Sign in: tokens in the JSON and in httpOnly cookies",
    body=Credentials,
    replies={200: Tokens},
    errors={401: "Wrong email or password", 429: "Too many attempts; see Retry-After"},
)
async def login(request: web.Request) -> web.Response:
    """POST /v1/auth/login {email, password, client?} -> tokens + cookies."""
    app = request.app
    settings = app[settings_key]
    body = await parse_body(request, Credentials)
    guard = LoginGuard(
        app[redis_key],
        app[rkeys_key],
        LoginLimits(
            free=settings.login_free_failures,
            account_free=settings.login_account_free_failures,
            address_failures_per_minute=settings.login_ip_failures_per_minute,
        ),
    )
    account, address = subject_key(body.email), _rate_subject(request)
    await guard.check(account, address)
    try:
        issued = await app[auth_key].login(body.email, body.password, client=body.client)
    except Unauthorized:
        await guard.failed(account, address)
        raise
    await guard.succeeded(account, address)
    return _token_response(request, issued, web_client=body.client == "web")


@routes.post(
    "/v1/auth/refresh",
    summary="Rotate the refresh token: new access and refresh tokens",
    description="Send the refresh token in the body, or (browsers) the refresh cookie "
    f"with the `{CSRF_HEADER}` header. A refresh token used twice revokes its whole login.",
    body=RefreshRequest,
    body_optional=True,
    replies={200: Tokens},
    auth=("refresh_cookie",),
    auth_optional=True,
    errors={403: "Cookie without the CSRF header (`csrf_failed`)"},
)
async def refresh(request: web.Request) -> web.Response:
    """POST /v1/auth/refresh {refresh_token} (or the refresh cookie) -> rotated tokens."""
    body = await parse_body(request, RefreshRequest, optional=True)
    token = body.refresh_token
    web_client = body.client == "web"
    if token is None:
        token = request.cookies.get(REFRESH_COOKIE)
        if token is not None:
            check_csrf(request)
            web_client = True
    if not token:
        raise Unauthorized("A refresh token is required", code="invalid_token")
    try:
        issued = await request.app[auth_key].refresh(token)
    except TokenError as err:
        request.app[metrics_key].reject_token("refresh", err.code)
        resp_err = Unauthorized(str(err) or "Invalid refresh token", code=err.code)
        raise resp_err from err
    return _token_response(request, issued, web_client=web_client)


@routes.post(
    "/v1/auth/logout",
    summary="Sign out: the access token and its login are revoked, cookies cleared",
    body=LogoutRequest,
    body_optional=True,
    replies={204: None},
    auth=SIGNED_IN,
    errors={403: "Cookie without the CSRF header (`csrf_failed`)"},
)
async def logout(request: web.Request) -> web.Response:
    """POST /v1/auth/logout -> 204; the access token and its login are revoked."""
    claims = await authenticate(request)
    body = await parse_body(request, LogoutRequest, optional=True)
    refresh_token = body.refresh_token or request.cookies.get(REFRESH_COOKIE)
    await request.app[auth_key].logout(claims, refresh_token)
    resp = web.Response(status=204)
    for name, path in (
        (ACCESS_COOKIE, "/"),
        (REFRESH_COOKIE, REFRESH_COOKIE_PATH),
        (CSRF_COOKIE, "/"),
    ):
        resp.del_cookie(name, path=path)
    return resp


@routes.get(
    "/.well-known/jwks.json",
    summary="The public keys that verify access tokens (JWK Set)",
    replies={200: JwkSet},
)
async def jwks_view(request: web.Request) -> web.Response:
    """GET /.well-known/jwks.json -> the public keys that verify access tokens."""
    return json_response(
        request.app[keystore_key].keys.jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


def setup_routes(app: web.Application) -> None:
    """Mount the auth endpoints."""
    routes.mount(app)
