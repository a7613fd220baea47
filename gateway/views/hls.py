"""HLS views: the session's master and media playlists, content segments, ad files.

Every request carries a segment token (``?t=``) bound to its exact path; the playlists
hand out a token for every URI they list.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import HotlinkDenied, TokenRequired
from gateway.keys import playback_key
from gateway.playback import (
    authorize_uri,
    check_ad,
    check_rendition,
    master_text,
    media_text,
    record_ad_fetch,
    record_content_fetch,
    session_signer,
)
from gateway.playlists import origin_key_for
from origin import object_key
from runtime.net import client_ip
from runtime.web import settings_key
from tokens.service.sessions import PlaybackSession
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


async def _session_for(request: web.Request) -> PlaybackSession:
    """The live session this URI's token was issued to."""
    token = request.query.get("t")
    if not token:
        raise TokenRequired()
    settings = request.app[settings_key]
    return await authorize_uri(
        request.app[playback_key],
        request.app[keystore_key].keys.segments,
        token=token,
        raw_path=request.rel_url.raw_path,
        client_ip=client_ip(request, settings.trusted_proxies),
        movie_id=request.match_info.get("movie_id"),
    )


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


def _playlist_response(request: web.Request, text: str) -> web.Response:
    resp = web.Response(
        text=text,
        content_type=PLAYLIST_TYPE,
        charset=None,
        headers={"Cache-Control": PLAYLIST_CACHE_CONTROL},
    )
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        resp.enable_compression()
    return resp


async def master_playlist(request: web.Request) -> web.Response:
    """GET /hls/{movie_id}/master.m3u8?t= -> the tier-filtered, tokenized master."""
    _check_hotlink(request)
    session = await _session_for(request)
    signer = session_signer(request.app[keystore_key].keys.segments, session)
    return _playlist_response(
        request, await master_text(request.app[playback_key], session, signer)
    )


async def media_playlist(request: web.Request) -> web.Response:
    """GET /hls/{movie_id}/{rendition}/{name}.m3u8?t= -> the session's media playlist."""
    _check_hotlink(request)
    session = await _session_for(request)
    signer = session_signer(request.app[keystore_key].keys.segments, session)
    text = await media_text(
        request.app[playback_key],
        session,
        request.match_info["rendition"],
        request.match_info["name"],
        signer,
    )
    return _playlist_response(request, text)


async def segment(request: web.Request) -> web.StreamResponse:
    """GET /hls/{movie_id}/{rendition}/{name}?t= -> segment, init section or key bytes."""
    session = await _session_for(request)
    rendition, name = request.match_info["rendition"], request.match_info["name"]
    check_rendition(session, rendition)
    pb = request.app[playback_key]
    key = origin_key_for(session.movie_id, rendition, name)
    await record_content_fetch(pb, session, rendition, request.rel_url.raw_path)
    return await pb.origin.serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)


async def ad_playlist(request: web.Request) -> web.StreamResponse:
    """GET /hls/ads/{ad_id}/{rendition}/{name}.m3u8?t= -> a creative's playlist (its
    URIs are already signed inside the stitched content playlist)."""
    session = await _session_for(request)
    ad_id = request.match_info["ad_id"]
    check_ad(session, ad_id)
    pb = request.app[playback_key]
    await pb.sessions.heartbeat(session)
    key = object_key("ads", ad_id, request.match_info["rendition"], request.match_info["name"])
    return await pb.origin.serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)


async def ad_segment(request: web.Request) -> web.StreamResponse:
    """GET /hls/ads/{ad_id}/{rendition}/{name}?t= -> ad bytes (same path for every viewer,
    so the edge caches them), counted as impressions, quartiles and completes."""
    session = await _session_for(request)
    ad_id = request.match_info["ad_id"]
    check_ad(session, ad_id)
    rendition, name = request.match_info["rendition"], request.match_info["name"]
    key = object_key("ads", ad_id, rendition, name)
    pb = request.app[playback_key]
    await record_ad_fetch(pb, session, ad_id, rendition, request.rel_url.raw_path)
    return await pb.origin.serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)
