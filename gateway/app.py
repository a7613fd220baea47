"""``create_app(settings)``: the gateway application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import edge_usage
from gateway.ads.inventory import Inventory
from gateway.ads.service import AdLibrary, Stitcher
from gateway.catalogue import Trending
from gateway.cors import add_cors_headers, cors_preflight
from gateway.errors import Conflicting, GatewayError, Missing, Refused, TokenRequired
from gateway.keys import playback_key, trending_key
from gateway.metering import UsageMeter
from gateway.metrics import GatewayMetrics
from gateway.pages import setup_routes as setup_page_routes
from gateway.playback import (
    PROGRESS_QUEUE_MAX,
    Playback,
    PlaybackCounters,
    ProgressQueue,
    progress_writer,
    usage_writer,
)
from gateway.playlists import PlaylistCache
from gateway.views import setup_routes as setup_playback_routes
from hls import ForeignUriError, PlaylistError
from origin import (
    InvalidObjectKey,
    ObjectNotFound,
    ObjectTooLarge,
    OriginError,
    OriginUnavailable,
    S3Origin,
)
from origin.factory import create_origin
from runtime.api import add_openapi
from runtime.errors import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from runtime.metrics import multiproc_dir
from runtime.settings import Settings
from runtime.web import (
    base_app,
    error_mappers_key,
    metrics_key,
    pg_key,
    redis_key,
    response_hooks_key,
    rkeys_key,
    settings_key,
)
from tokens import TokenError
from tokens.service.sessions import SessionRefused, SessionStore
from tokens.service.views import SECURITY_SCHEMES, auth_ctx, auth_key, keystore_key
from tokens.service.views import setup_routes as setup_auth_routes

API_DESCRIPTION = """The Kush Films API for players and app developers: accounts and
tokens, the catalogue, playback sessions, progress, and the HLS playlists and segments a
session plays.

Sign in with `POST /v1/auth/login` and send the access token as `Authorization: Bearer`
(browsers may use the httpOnly cookies instead, with the `X-CSRF-Token` header on
state-changing requests). `POST /v1/playback/{movie_id}` returns a `manifest_url`; every
URI in its playlists carries its own token `t`, so a player simply follows them.

Errors are `{"error": {"code", "message"}}`; a body or query that does not fit its schema
is 422 `invalid_request` with `fields` listing each path at fault."""


def map_domain_error(exc: Exception) -> ApiError | None:
    """Domain exceptions of the gateway and the libraries it uses, as JSON errors."""
    if isinstance(exc, GatewayError):
        if isinstance(exc, Missing):
            return NotFound(exc.message, code=exc.code)
        if isinstance(exc, Refused):
            return Forbidden(exc.message, code=exc.code)
        if isinstance(exc, TokenRequired):
            return Unauthorized(exc.message, code=exc.code)
        if isinstance(exc, Conflicting):
            return Conflict(exc.message, code=exc.code)
        return ApiError(exc.message, code=exc.code)
    if isinstance(exc, SessionRefused):
        return Forbidden(exc.message, code=exc.code)
    if isinstance(exc, TokenError):
        return Unauthorized(str(exc) or "Invalid token", code=exc.code)
    if isinstance(exc, InvalidObjectKey | ObjectNotFound):
        return NotFound("No such file", code="not_found")
    if isinstance(exc, OriginUnavailable):
        return ServiceUnavailable(
            "The video origin is unavailable; try again shortly",
            code="origin_unavailable",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, ForeignUriError | PlaylistError | ObjectTooLarge):
        return ApiError("The stored playlist is unusable", code="bad_origin_playlist", status=502)
    if isinstance(exc, OriginError):
        # the origin answered, but not with the object (a 403 from a misconfigured
        # bucket, an unexpected status): our upstream is broken, the request is not
        return ApiError("The video origin answered with an error", code="origin_error", status=502)
    return None


async def _playback_ctx(app: web.Application) -> AsyncIterator[None]:
    """The origin store, the playlist template cache, sessions, ads, the background
    progress and usage writers and the edge's usage lines (UDP): the playback domain's
    dependencies, built once per process."""
    settings = app[settings_key]
    origin = create_origin(settings)
    sessions = SessionStore(
        app[pg_key],
        app[redis_key],
        app[rkeys_key],
        idle_s=settings.stream_idle_s,
        max_networks=settings.max_networks_per_session,
        grace_s=settings.session_grace_s,
        cache_s=settings.session_cache_s,
    )
    metrics = GatewayMetrics(app[metrics_key])
    if isinstance(origin, S3Origin):
        metrics.watch_origin(origin)
    metrics.watch_sessions(app[redis_key], app[rkeys_key], idle_s=settings.stream_idle_s)
    pb = app[playback_key] = Playback(
        settings=app[settings_key],
        pool=app[pg_key],
        redis=app[redis_key],
        keys=app[rkeys_key],
        origin=origin,
        playlists=PlaylistCache(origin),
        sessions=sessions,
        inventory=Inventory(app[pg_key], app[redis_key], app[rkeys_key]),
        stitcher=Stitcher(AdLibrary(origin), on_fallback=metrics.ad_fallback),
        progress=ProgressQueue(maxsize=PROGRESS_QUEUE_MAX, dropped=metrics.progress_dropped),
        counters=PlaybackCounters(start=metrics.start, token_reject=metrics.token_reject),
        usage=UsageMeter(dropped=metrics.usage_dropped),
    )
    app[auth_key].family_revoked_hooks.append(sessions.end_family)
    edge_lines = edge_usage.listening(
        pb,
        lambda: app[keystore_key].keys.segments,
        host=settings.host,
        port=settings.edge_usage_port,
        trusted=settings.trusted_proxies,
        count=metrics.edge_usage_line,
    )
    # closed in reverse: the edge's lines stop first, then the usage writer writes the rest
    await sessions.start()  # revocations pushed to this process's session cache
    try:
        async with progress_writer(pb), usage_writer(pb), edge_lines:
            yield
    finally:
        await sessions.close()
    await origin.close()


async def _catalogue_ctx(app: web.Application) -> AsyncIterator[None]:
    """The trending lists, cached per process."""
    app[trending_key] = Trending(app[pg_key], app[redis_key], app[rkeys_key])
    yield


def create_app(settings: Settings) -> web.Application:
    """Build the gateway app; resources open in ``cleanup_ctx``, nothing at import time."""
    app = base_app(settings, "gateway", metrics_dir=multiproc_dir())
    app[error_mappers_key].append(map_domain_error)
    app.middlewares.append(cors_preflight)
    app.cleanup_ctx.append(auth_ctx)
    app.cleanup_ctx.append(_playback_ctx)
    app.cleanup_ctx.append(_catalogue_ctx)
    app[response_hooks_key].append(add_cors_headers)
    setup_auth_routes(app)
    setup_playback_routes(app)
    setup_page_routes(app)
    add_openapi(
        app,
        "/v1/openapi.json",
        title="Kush Films API",
        version="1",
        description=API_DESCRIPTION,
        security_schemes=SECURITY_SCHEMES,
    )
    return app
