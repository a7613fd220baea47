"""CORS for browser players on other origins (HLS files and posters)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from runtime.web import settings_key


@web.middleware
async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """OPTIONS on /hls/...: browser players on other origins may fetch with Range.

    A middleware rather than an ``OPTIONS /hls/{tail:.*}`` route: such a route makes
    every unknown ``/hls/`` path answer 405 to a GET instead of 404.
    """
    if request.method == "OPTIONS" and request.path.startswith("/hls/"):
        return web.Response(status=204, headers={"Access-Control-Max-Age": "86400"})
    return await handler(request)


#: what every CORS answer carries besides the allowed origin
_CORS_HEADERS = {
    "Access-Control-Allow-Headers": "Range",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
}
_CORS_ANY_ORIGIN = {"Access-Control-Allow-Origin": "*", **_CORS_HEADERS}
_CORS_PATHS = ("/hls/", "/posters/")


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """A response hook (``runtime.web.response_hooks_key``): CORS headers on HLS and
    poster responses (also those streamed by the origin), so hls.js on another origin
    can play. Runs on every segment and playlist: the headers are set in one call."""
    if not request.path.startswith(_CORS_PATHS):
        return
    allowed = request.app[settings_key].cors_allowed_origins
    if "*" in allowed:
        response.headers.update(_CORS_ANY_ORIGIN)
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin in allowed:
        response.headers.update(_CORS_HEADERS)
        response.headers["Access-Control-Allow-Origin"] = origin
        vary = response.headers.get("Vary")  # playlists vary by Accept-Encoding too
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
