"""CORS for browser players on other origins (HLS files and posters)."""

from __future__ import annotations

from aiohttp import web

from runtime.web import settings_key


async def cors_preflight(request: web.Request) -> web.Response:
    """OPTIONS on /hls/...: browser players on other origins may fetch with Range."""
    return web.Response(status=204, headers={"Access-Control-Max-Age": "86400"})


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
