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

``/_edge/usage`` is where the edge reports, after sending a segment (nginx
``post_action``), how many body bytes it sent: the data metering of segments served by
the edge, from its cache or not (the gateway does not count the segments it sends the
edge, which marks them ``X-Kush-Edge-Metered``).
"""

from __future__ import annotations

import re

from aiohttp import web
from yarl import URL

from gateway.errors import GatewayError, NotFromEdge, PlaybackTokenRejected, TokenRequired
from gateway.keys import playback_key
from gateway.playback import (
    authorize_uri,
    check_ad,
    check_rendition,
    meter,
    record_ad_fetch,
    record_content_fetch,
)
from runtime.api import Param, Routes
from runtime.net import client_ip, peer_is_trusted
from runtime.web import error_body, settings_key
from tokens.service.sessions import SessionRefused
from tokens.service.views import keystore_key

AUTH_PATH = "/_edge/auth"
USAGE_PATH = "/_edge/usage"
ORIGINAL_URI_HEADER = "X-Original-URI"
BYTES_SENT_HEADER = "X-Kush-Bytes-Sent"
STATUS_HEADER = "X-Kush-Status"
ERROR_HEADER = "X-Kush-Error"

routes = Routes(tags=("edge",))

_AD_FILE = re.compile(r"^/hls/ads/(?P<ad_id>[^/]+)/(?P<rendition>[^/]+)/(?P<name>[^/]+)$")
_FILM_FILE = re.compile(r"^/hls/(?P<movie_id>[^/]+)/(?P<rendition>[^/]+)/(?P<name>[^/]+)$")


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


def _segment_uri(original: str) -> tuple[URL, re.Match[str] | None, re.Match[str] | None]:
    """The segment URI nginx passed: (URL, ad file match, film file match)."""
    try:
        url = URL(original)
    except ValueError:
        raise PlaybackTokenRejected("Not a segment address") from None
    if url.is_absolute() or not url.raw_path.startswith("/hls/"):
        raise PlaybackTokenRejected("Not a segment address")
    path = url.path
    if path.endswith(".m3u8"):
        # playlists are answered by the gateway itself, never from the edge's cache
        raise PlaybackTokenRejected("Playlists are not authorized here")
    ad = _AD_FILE.match(path)
    film = None if ad else _FILM_FILE.match(path)
    if ad is None and film is None:
        raise PlaybackTokenRejected("Not a segment address")
    return url, ad, film


async def _authorize(request: web.Request) -> None:
    url, ad, film = _segment_uri(request.headers.get(ORIGINAL_URI_HEADER, ""))
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


@routes.get(
    USAGE_PATH,
    summary="Internal, for the nginx edge: the bytes it sent for one segment URI",
    description="nginx's `post_action` after it sent a segment: `X-Original-URI` names "
    "it (with its token), `X-Kush-Bytes-Sent` the body bytes sent and `X-Kush-Status` "
    "the status. Counted in the session's data usage when the token verifies; anything "
    "else is ignored. Only from `KUSH_TRUSTED_PROXIES` (the edge); through the edge this "
    "path answers 404.",
    replies={204: None},
    errors={403: "Not from a trusted proxy (`not_from_edge`)"},
    params=(
        Param(ORIGINAL_URI_HEADER, "header", "The client's request URI: `/hls/...?t=<token>`"),
        Param(BYTES_SENT_HEADER, "header", "Body bytes sent to the client"),
        Param(STATUS_HEADER, "header", "The status sent to the client"),
    ),
)
async def usage(request: web.Request) -> web.Response:
    """GET /_edge/usage (nginx ``post_action``) -> 204."""
    settings = request.app[settings_key]
    if not peer_is_trusted(request, settings.trusted_proxies):
        raise NotFromEdge()
    nbytes = _int(request.headers.get(BYTES_SENT_HEADER))
    if nbytes > 0 and request.headers.get(STATUS_HEADER) in ("200", "206"):
        try:
            url, _, film = _segment_uri(request.headers.get(ORIGINAL_URI_HEADER, ""))
            token = url.query.get("t")
            if token:
                session = await authorize_uri(
                    request.app[playback_key],
                    request.app[keystore_key].keys.segments,
                    token=token,
                    raw_path=url.raw_path,
                    client_ip=client_ip(request, settings.trusted_proxies),
                    movie_id=film["movie_id"] if film else None,
                )
                meter(request.app[playback_key], session, nbytes, edge=True)
        except (GatewayError, SessionRefused):
            pass  # a refused or ended session: nothing of it to count
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def _int(value: str | None) -> int:
    try:
        return int(value or "0")
    except ValueError:
        return 0
