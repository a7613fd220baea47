"""Playback session views: ``POST /v1/playback/{movie_id}``, ``DELETE
/v1/playback/{session_id}``."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from gateway.errors import GatewayError, SessionNotFound
from gateway.keys import playback_key
from gateway.playback import Viewing, iso_utc, session_sealer, start_session, stop_session
from gateway.playlists import hls_root
from runtime import ratelimit
from runtime.api import DateTimeStr, Param, PathParam, ReplyModel, Routes
from runtime.errors import ApiError
from runtime.net import client_ip, client_scheme, trusted_header
from runtime.web import json_response, redis_key, rkeys_key, settings_key
from tokens import AccessClaims, ip_prefix_of
from tokens.service.playback_session import PlaybackSession
from tokens.service.sessions import SessionRefused
from tokens.service.views import SIGNED_IN, authenticate, keystore_key

routes = Routes(tags=("playback",))
SAVE_DATA = Param(
    "Save-Data",
    "header",
    "`on`: a data-saver session, as with the account's `data_saver` setting",
)


def wants_saving(request: web.Request) -> bool:
    """The client asked to save data (``Save-Data: on``, the Client Hint browsers send
    when the user turned on a data saver)."""
    return request.headers.get("Save-Data", "").strip().lower() == "on"


class PlaybackStarted(ReplyModel):
    """A playback session: play ``manifest_url`` (every URI in it carries its own token)."""

    session_id: str = Field(description="End it with `DELETE /v1/playback/{session_id}`")
    manifest_url: str = Field(description="The signed master playlist URL")
    expires_at: DateTimeStr = Field(description="When the playback tokens expire")
    ads: bool = Field(description="Whether ad breaks are stitched into the playlists")
    start_offset: float | None = Field(description="Resume position in seconds, if any")
    renditions: list[str] = Field(description="The renditions the plan allows")
    data_saver: bool = Field(
        description="A data-saver session (the account's `data_saver` setting or the "
        "`Save-Data: on` header): at most `KUSH_DATA_SAVER_MAX_HEIGHT` (360p), the "
        "smallest rendition listed first, a lighter ad load"
    )


def base_url(request: web.Request) -> str:
    """Where players reach this gateway: ``KUSH_PUBLIC_URL`` or the request's host (the
    edge's, through the edge), with the scheme a trusted proxy reports."""
    settings = request.app[settings_key]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"{client_scheme(request, settings.trusted_proxies)}://{request.host}"


async def _start(request: web.Request, claims: AccessClaims) -> PlaybackSession:
    """The rate limit, who starts and from where, then the domain's start."""
    settings = request.app[settings_key]
    # each start may compile a stitched playlist: bounded per account so one looping
    # client cannot pin a worker (segments and playlists are never limited)
    await ratelimit.hit(
        request.app[redis_key],
        request.app[rkeys_key],
        "play-start",
        claims.sub,
        limit=settings.playback_starts_per_minute,
        window_s=60,
    )
    trusted = settings.trusted_proxies
    ip = client_ip(request, trusted)
    who = Viewing(
        user_id=claims.sub,
        family_id=claims.sid,
        country=trusted_header(request, trusted, settings.geo_header),
        region=trusted_header(request, trusted, settings.region_header),
        client_ip=ip,
        ip_prefix=ip_prefix_of(ip) if settings.segment_ip_binding else None,
        user_agent=request.headers.get("User-Agent"),
        save_data=wants_saving(request),
    )
    return await start_session(request.app[playback_key], request.match_info["id"], who)


# One parameter name for both routes: OpenAPI treats /v1/playback/{movie_id} and
# /v1/playback/{session_id} as the same path, so both say {id} (film on POST, session on
# DELETE).
@routes.post(
    "/v1/playback/{id}",
    summary="Start watching a film: a session and its signed manifest URL",
    replies={201: PlaybackStarted},
    auth=SIGNED_IN,
    errors={
        403: "Not allowed: `not_entitled`, `geo_blocked`, `age_restricted`, "
        "`account_disabled`, `stream_limit` (stop another stream first), or a cookie "
        "without the CSRF header (`csrf_failed`)",
        404: "No such published film (`movie_not_found`)",
        429: "Too many playback starts for this account (`rate_limited`; see Retry-After)",
    },
    path_params={"id": PathParam("The film's id", "uuid")},
    params=(SAVE_DATA,),
)
async def start_playback(request: web.Request) -> web.Response:
    """POST /v1/playback/{movie_id} -> 201 {session_id, manifest_url, expires_at, ads,
    data_saver}."""
    claims = await authenticate(request)
    pb = request.app[playback_key]
    try:
        session = await _start(request, claims)
    except (GatewayError, SessionRefused, ApiError) as err:
        if not isinstance(err, ApiError) or err.status < 500:
            pb.counters.start("refused", err.code)
        raise
    pb.counters.start("started", "")
    path = hls_root(session.movie_id) + "master.m3u8"
    token = session_sealer(request.app[keystore_key].keys.segments, session).sign(path)
    return json_response(
        PlaybackStarted(
            session_id=session.id,
            manifest_url=f"{base_url(request)}{path}?t={token}",
            expires_at=iso_utc(session.expires_at),
            ads=bool(session.ad_plan),
            start_offset=session.start_offset,
            renditions=list(session.renditions),
            data_saver=session.data_saver,
        ),
        status=201,
        headers={"Cache-Control": "no-store"},
    )


@routes.delete(
    "/v1/playback/{id}",
    summary="Stop watching: ends the session and frees the stream slot",
    replies={204: None},
    auth=SIGNED_IN,
    errors={
        403: "A cookie without the CSRF header (`csrf_failed`)",
        404: "No such session of yours (`session_not_found`)",
    },
    path_params={"id": PathParam("The `session_id` returned when playback started")},
)
async def end_playback(request: web.Request) -> web.Response:
    """DELETE /v1/playback/{session_id} -> 204; frees the stream slot."""
    claims = await authenticate(request)
    ended = await stop_session(request.app[playback_key], request.match_info["id"], claims.sub)
    if not ended:
        raise SessionNotFound()
    return web.Response(status=204)
