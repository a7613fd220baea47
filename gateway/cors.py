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


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers on HLS and poster responses (also those
    streamed by the origin), so hls.js on another origin can play."""
    if not (request.path.startswith("/hls/") or request.path.startswith("/posters/")):
        return
    allowed = request.app[settings_key].cors_allowed_origins
    origin = request.headers.get("Origin")
    if "*" in allowed:
        value = "*"
    elif origin is not None and origin in allowed:
        value = origin
        response.headers["Vary"] = "Origin"
    else:
        return
    response.headers["Access-Control-Allow-Origin"] = value
    response.headers["Access-Control-Allow-Headers"] = "Range"
    response.headers["Access-Control-Expose-Headers"] = "Content-Length, Content-Range"
    response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
