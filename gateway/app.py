"""``create_app(settings)``: the gateway application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.ads.inventory import Inventory
from gateway.ads.service import AdLibrary, Stitcher
from gateway.pages import setup_routes as setup_page_routes
from gateway.playback import PlaylistCache
from gateway.views import (
    add_cors_headers,
    confirmed_key,
    inventory_key,
    origin_key,
    playlists_key,
    progress_marks_key,
    sessions_key,
    stitcher_key,
)
from gateway.views import setup_routes as setup_playback_routes
from hls import ForeignUriError, PlaylistError
from origin import InvalidObjectKey, ObjectNotFound, ObjectTooLarge, OriginUnavailable
from origin.factory import create_origin
from runtime.errors import ApiError, NotFound, ServiceUnavailable, Unauthorized
from runtime.settings import Settings
from runtime.web import base_app, error_mappers_key, pg_key, redis_key, rkeys_key, settings_key
from tokens import TokenError
from tokens.service.sessions import SessionStore
from tokens.service.views import auth_ctx, auth_key
from tokens.service.views import setup_routes as setup_auth_routes


def map_domain_error(exc: Exception) -> ApiError | None:
    """Domain exceptions of the libraries the gateway uses, as JSON errors."""
    if isinstance(exc, TokenError):
        return Unauthorized(str(exc) or "Invalid token", code=exc.code)
    if isinstance(exc, InvalidObjectKey):
        return NotFound("No such file", code="not_found")
    if isinstance(exc, ObjectNotFound):
        return NotFound("No such file", code="not_found")
    if isinstance(exc, OriginUnavailable):
        return ServiceUnavailable(
            "The video origin is unavailable; try again shortly",
            code="origin_unavailable",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, ForeignUriError | PlaylistError | ObjectTooLarge):
        return ApiError("The stored playlist is unusable", code="bad_origin_playlist", status=502)
    return None


async def _playback_ctx(app: web.Application) -> AsyncIterator[None]:
    """The origin store, the playlist template cache and the session store."""
    origin = create_origin(app[settings_key])
    app[origin_key] = origin
    app[playlists_key] = PlaylistCache(origin)
    sessions = SessionStore(app[pg_key], app[redis_key], app[rkeys_key])
    app[sessions_key] = sessions
    app[progress_marks_key] = {}
    app[inventory_key] = Inventory(app[pg_key], app[redis_key], app[rkeys_key])
    app[stitcher_key] = Stitcher(AdLibrary(origin))
    app[confirmed_key] = set()
    app[auth_key].family_revoked_hooks.append(sessions.end_family)
    yield
    await origin.close()


def create_app(settings: Settings) -> web.Application:
    """Build the gateway app; resources open in ``cleanup_ctx``, nothing at import time."""
    app = base_app(settings, "gateway")
    app[error_mappers_key].append(map_domain_error)
    app.cleanup_ctx.append(auth_ctx)
    app.cleanup_ctx.append(_playback_ctx)
    app.on_response_prepare.append(add_cors_headers)
    setup_auth_routes(app)
    setup_playback_routes(app)
    setup_page_routes(app)
    return app
