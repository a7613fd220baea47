"""HLS views: the session's master and media playlists, content segments, ad files.

Every request carries a segment token (``?t=``) bound to its exact path; the playlists
hand out a token for every URI they list.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from gateway.errors import HotlinkDenied
from gateway.keys import playback_key
from gateway.playback import (
    authorize_uri,
    check_ad,
    check_rendition,
    heartbeat,
    master_text,
    media_text,
    meter,
    record_ad_fetch,
    record_content_fetch,
    segment_slot,
    session_sealer,
)
from gateway.playlists import origin_key_for
from origin import object_key
from runtime.api import Content, Param, PathParam, Routes
from runtime.net import client_ip, trusted_header
from runtime.web import settings_key
from tokens.service.playback_session import PlaybackSession
from tokens.service.views import keystore_key

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# Segment bytes are the same for every viewer, but the token that admits them travels in
# the query string: a shared cache keyed on the path would hand premium bytes to anyone,
# one keyed on the full URL would cache nothing. So the gateway's own answers are
# ``private`` (the viewer's browser may keep them); the nginx edge caches them for itself
# after checking every request's token (nginx/, ``proxy_ignore_headers``), and a
# third-party CDN in front must validate tokens itself or key on the full URL (README).
SEGMENT_CACHE_CONTROL = "private, max-age=2592000, immutable"
PLAYLIST_CACHE_CONTROL = "private, no-store"
PLAYLIST_SUFFIX = ".m3u8"
# Playlists are gzipped here, inline, at level 1: their tokens (half the bytes) are
# random, so higher levels buy almost nothing and cost CPU on the event loop.
# `make bench-edge` prints size and time per level for a two-hour playlist.
PLAYLIST_GZIP_LEVEL = 1
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip wrapper, as Content-Encoding: gzip expects
#: Set by the nginx edge on the segment requests it forwards: it reports the bytes it
#: sends the viewer itself (a UDP log line, ``gateway.edge_usage``), so the gateway does
#: not count them again.
EDGE_METERED_HEADER = "X-Kush-Edge-Metered"

# ------------------------------------------------------------------ what the document says
# The token ``t`` is read by hand, not by a model: it is a credential (absent: 401
# ``token_required``), and segment GETs are the hot path.

routes = Routes(tags=("hls",))
TOKEN = Param(
    "t",
    "query",
    "The playback token. `manifest_url` carries the master's; every URI in the "
    "playlists carries its own, bound to that exact path.",
    required=True,
)
RANGE = Param("Range", "header", "One byte range, e.g. `bytes=0-65535` (answered 206)")
PATH_PARAMS = {
    "movie_id": PathParam("The film's id", "uuid"),
    "ad_id": PathParam("The creative's id", "uuid"),
    "rendition": PathParam("A rendition folder listed in the master, e.g. `720p`"),
    "name": PathParam("A file name listed in the playlist (playlists: without `.m3u8`)"),
}
HLS_ERRORS = {
    401: "No token (`token_required`)",
    403: "Token invalid, expired or for another path or address (`invalid_token`, "
    "`token_expired`...), session ended (`session_revoked`; `film_unavailable` when the "
    "film was unpublished or taken down), rendition or ad not in the "
    "session (`not_entitled`, `invalid_token`), or another site (`hotlink_denied`)",
    404: "No such file (`not_found`) or film (`movie_not_found`)",
    502: "The video origin answered with an error (`origin_error`)",
    503: "The video origin is unavailable (`origin_unavailable`)",
}
PLAYLIST_ERRORS = {
    **HLS_ERRORS,
    502: "The stored playlist is unusable (`bad_origin_playlist`) or the origin answered "
    "with an error (`origin_error`)",
}


def _playlist(description: str) -> Content:
    return Content(
        description,
        (PLAYLIST_TYPE,),
        {"type": "string"},
        headers={"Cache-Control": PLAYLIST_CACHE_CONTROL},
    )


_FILE_TYPES = (
    "video/mp2t",
    "video/mp4",
    "audio/mp4",
    "audio/aac",
    "text/vtt",
    "application/octet-stream",
)
FILE_REPLIES = {
    200: Content(
        "The file's bytes (type by extension: .ts video/mp2t, .m4s/.mp4 video/mp4, .m4a "
        "audio/mp4, .aac, .vtt, .key application/octet-stream); cacheable for a month",
        _FILE_TYPES,
        headers={"Cache-Control": SEGMENT_CACHE_CONTROL},
    ),
    206: Content("The requested byte range", _FILE_TYPES),
    304: None,
    416: None,
}


def _token(request: web.Request) -> str | None:
    """The ``t`` query parameter. A URI the gateway signed has exactly ``t=<token>`` as
    its query (base64url: nothing to unescape), read without building the query
    mapping (~2 us of every playlist and segment request); any other query is parsed."""
    raw = request.rel_url.raw_query_string
    if raw.startswith("t=") and "&" not in raw and "%" not in raw and "+" not in raw:
        return raw[2:]
    return request.query.get("t")


async def _session_for(request: web.Request) -> PlaybackSession:
    """The live session this URI's token was issued to."""
    settings = request.app[settings_key]
    return await authorize_uri(
        request.app[playback_key],
        request.app[keystore_key].keys.segments,
        token=_token(request),
        raw_path=request.rel_url.raw_path,
        client_ip=client_ip(request, settings.trusted_proxies),
        movie_id=request.match_info.get("movie_id"),
    )


def _client(request: web.Request) -> str:
    return client_ip(request, request.app[settings_key].trusted_proxies)


def _check_hotlink(request: web.Request) -> None:
    allowed = request.app[settings_key].hotlink_allowed_hosts
    if not allowed:
        return
    for header in ("Origin", "Referer"):
        value = request.headers.get(header)
        if value:
            host = value.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
            if host not in allowed:
                raise HotlinkDenied()


def _edge_meters(request: web.Request) -> bool:
    """The edge in front counts this response's bytes itself (believed from a trusted
    proxy only)."""
    trusted = request.app[settings_key].trusted_proxies
    return trusted_header(request, trusted, EDGE_METERED_HEADER) == "1"


def _metered_bytes(request: web.Request, resp: web.StreamResponse) -> int:
    """The body bytes a file response delivered (its Content-Length: what was sent, or
    began to be), 0 for a HEAD, a 304 or a 416."""
    if request.method != "GET" or resp.status not in (200, 206):
        return 0
    return resp.content_length if resp.content_length is not None else resp.body_length


def _meter_playlist(
    request: web.Request, session: PlaybackSession, body: bytes | bytearray
) -> None:
    """Count a playlist's bytes, uncompressed; a HEAD sends none."""
    if request.method == "GET":
        meter(request.app[playback_key], session, len(body))


def gzip_playlist(body: bytes | bytearray, level: int = PLAYLIST_GZIP_LEVEL) -> bytes:
    """``body`` as a gzip member (RFC 1952) at ``level``."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(body) + compressor.flush()


def _playlist_response(request: web.Request, body: bytes | bytearray) -> web.Response:
    headers = {"Cache-Control": PLAYLIST_CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = gzip_playlist(body)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, content_type=PLAYLIST_TYPE, headers=headers)


async def _serve_segment(
    request: web.Request, session: PlaybackSession, key: str
) -> web.StreamResponse:
    """Stream segment bytes while holding one of the session's concurrent-segment slots
    (429 with Retry-After: 1 beyond ``KUSH_SESSION_MAX_CONCURRENT_SEGMENTS``)."""
    pb = request.app[playback_key]
    with segment_slot(pb, session):
        resp = await pb.origin.serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)
    if not _edge_meters(request):
        meter(pb, session, _metered_bytes(request, resp))
    return resp


@routes.get(
    "/hls/{movie_id}/master.m3u8",
    summary="The session's master playlist: the plan's renditions, every URI signed",
    replies={200: _playlist("The master playlist")},
    errors=PLAYLIST_ERRORS,
    path_params=PATH_PARAMS,
    params=(TOKEN,),
)
async def master_playlist(request: web.Request) -> web.Response:
    """GET /hls/{movie_id}/master.m3u8?t= -> the tier-filtered, tokenized master."""
    _check_hotlink(request)
    session = await _session_for(request)
    sealer = session_sealer(request.app[keystore_key].keys.segments, session)
    pb = request.app[playback_key]
    body = await master_text(pb, session, sealer)
    _meter_playlist(request, session, body)
    return _playlist_response(request, body)


@routes.get(
    "/hls/{movie_id}/{rendition}/{name}.m3u8",
    summary="The session's media playlist: segments signed, ad breaks stitched in",
    replies={200: _playlist("The media playlist")},
    errors=PLAYLIST_ERRORS,
    path_params=PATH_PARAMS,
    params=(TOKEN,),
)
async def media_playlist(request: web.Request) -> web.Response:
    """GET /hls/{movie_id}/{rendition}/{name}.m3u8?t= -> the session's media playlist."""
    _check_hotlink(request)
    session = await _session_for(request)
    sealer = session_sealer(request.app[keystore_key].keys.segments, session)
    pb = request.app[playback_key]
    body = await media_text(
        pb,
        session,
        request.match_info["rendition"],
        request.match_info["name"] + PLAYLIST_SUFFIX,
        sealer,
    )
    _meter_playlist(request, session, body)
    return _playlist_response(request, body)


@routes.get(
    "/hls/{movie_id}/{rendition}/{name}",
    summary="A content segment, init section or key (counts as watching)",
    replies=FILE_REPLIES,
    errors=HLS_ERRORS,
    path_params=PATH_PARAMS,
    params=(TOKEN, RANGE),
)
async def segment(request: web.Request) -> web.StreamResponse:
    """GET /hls/{movie_id}/{rendition}/{name}?t= -> segment, init section or key bytes."""
    session = await _session_for(request)
    rendition, name = request.match_info["rendition"], request.match_info["name"]
    check_rendition(session, rendition)
    pb = request.app[playback_key]
    key = origin_key_for(session.movie_id, rendition, name)
    await record_content_fetch(pb, session, rendition, request.rel_url.raw_path, _client(request))
    return await _serve_segment(request, session, key)


@routes.get(
    "/hls/ads/{ad_id}/{rendition}/{name}.m3u8",
    summary="An ad creative's media playlist (listed in a stitched playlist)",
    replies={
        200: Content(
            "The creative's playlist",
            (PLAYLIST_TYPE,),
            {"type": "string"},
            headers={"Cache-Control": SEGMENT_CACHE_CONTROL},
        ),
        304: None,
    },
    errors=HLS_ERRORS,
    path_params=PATH_PARAMS,
    params=(TOKEN,),
)
async def ad_playlist(request: web.Request) -> web.StreamResponse:
    """GET /hls/ads/{ad_id}/{rendition}/{name}.m3u8?t= -> a creative's playlist (its
    URIs are already signed inside the stitched content playlist)."""
    session = await _session_for(request)
    ad_id = request.match_info["ad_id"]
    check_ad(session, ad_id)
    pb = request.app[playback_key]
    await heartbeat(pb, session, _client(request))
    name = request.match_info["name"] + PLAYLIST_SUFFIX
    key = object_key("ads", ad_id, request.match_info["rendition"], name)
    resp = await pb.origin.serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)
    meter(pb, session, _metered_bytes(request, resp))
    return resp


@routes.get(
    "/hls/ads/{ad_id}/{rendition}/{name}",
    summary="An ad segment (same path for every viewer; counts impressions and quartiles)",
    replies=FILE_REPLIES,
    errors=HLS_ERRORS,
    path_params=PATH_PARAMS,
    params=(TOKEN, RANGE),
)
async def ad_segment(request: web.Request) -> web.StreamResponse:
    """GET /hls/ads/{ad_id}/{rendition}/{name}?t= -> ad bytes (same path for every viewer,
    so the edge caches them), counted as impressions, quartiles and completes."""
    session = await _session_for(request)
    ad_id = request.match_info["ad_id"]
    check_ad(session, ad_id)
    rendition, name = request.match_info["rendition"], request.match_info["name"]
    key = object_key("ads", ad_id, rendition, name)
    pb = request.app[playback_key]
    await record_ad_fetch(pb, session, ad_id, rendition, request.rel_url.raw_path, _client(request))
    return await _serve_segment(request, session, key)
