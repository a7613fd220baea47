"""The nginx edge's ``auth_request`` endpoint: may this URI's bytes be sent?

The edge (``nginx/``) serves segments from a cache whose key leaves the token out, so
every viewer of a film shares one cached copy; before it sends any of them it asks here.
nginx passes the client's request line in ``X-Original-URI``; the answer is 204 when the
token verifies for that exact path and its playback session is alive, 401 when there is
no token, 403 otherwise — with the reason in ``X-Kush-Error`` (nginx turns it into the
JSON error the player sees). No body is read or sent, no database is touched.

A yes also does what the gateway does for a segment it serves itself: the stream's
heartbeat, the viewer's position and ad delivery events, because on a cache hit the
gateway never sees the segment request.

The bytes the edge sends for each segment reach the gateway as access-log lines over UDP
(:mod:`gateway.edge_usage`), not through a route here.
"""

from __future__ import annotations

from aiohttp import web

from gateway.edge_usage import segment_uri
from gateway.errors import GatewayError, TokenRequired
from gateway.keys import playback_key
from gateway.playback import (
    authorize_uri,
    check_ad,
    check_rendition,
    record_ad_fetch,
    record_content_fetch,
)
from runtime.api import Param, Routes
from runtime.net import client_ip
from runtime.web import error_body, settings_key
from tokens.service.sessions import SessionRefused
from tokens.service.views import keystore_key

AUTH_PATH = "/_edge/auth"
ORIGINAL_URI_HEADER = "X-Original-URI"
ERROR_HEADER = "X-Kush-Error"

routes = Routes(tags=("edge",))


def _refusal(status: int, err: GatewayError | SessionRefused) -> web.Response:
    """A no: the status nginx acts on, the code it shows; never cached."""
    return web.Response(
        status=status,
        body=error_body(err.code, err.message),
        content_type="application/json",
        headers={ERROR_HEADER: err.code, "Cache-Control": "no-store"},
    )


@routes.get(
    AUTH_PATH,
    summary="Internal, for the nginx edge: may this segment URI be served?",
    description="nginx's `auth_request` before it sends a segment, usually from its "
    "cache: the token in `X-Original-URI` must verify for that exact path and its "
    "playback session must be live. A yes also counts the fetch (stream heartbeat, "
    "position, ad events). No body either way; a refusal's code is in `X-Kush-Error`. "
    "Through the edge this path answers 404.",
    replies={204: None},
    errors={
        401: "No token in the URI (`token_required`)",
        403: "Token invalid or for another path, session ended, rendition or ad not in "
        "the session, or not a segment URI (code in `X-Kush-Error`)",
    },
    params=(
        Param(
            ORIGINAL_URI_HEADER,
            "header",
            "The client's request URI: `/hls/...?t=<token>`",
            required=True,
        ),
    ),
)
async def authorize(request: web.Request) -> web.Response:
    """GET /_edge/auth (nginx ``auth_request``) -> 204, 401 or 403."""
    try:
        await _authorize(request)
    except TokenRequired as err:
        return _refusal(401, err)
    except (GatewayError, SessionRefused) as err:
        return _refusal(403, err)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


async def _authorize(request: web.Request) -> None:
    url, ad, film = segment_uri(request.headers.get(ORIGINAL_URI_HEADER, ""))
    pb = request.app[playback_key]
    client = client_ip(request, request.app[settings_key].trusted_proxies)
    session = await authorize_uri(
        pb,
        request.app[keystore_key].keys.segments,
        token=url.query.get("t"),
        raw_path=url.raw_path,
        client_ip=client,
        movie_id=film["movie_id"] if film else None,
    )
    if ad is not None:
        check_ad(session, ad["ad_id"])
        await record_ad_fetch(pb, session, ad["ad_id"], ad["rendition"], url.raw_path, client)
    elif film is not None:
        check_rendition(session, film["rendition"])
        await record_content_fetch(pb, session, film["rendition"], url.raw_path, client)
