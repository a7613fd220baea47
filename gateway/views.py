"""Gateway HTTP views: catalogue, playback sessions, playlists, segments, progress.

Thin handlers: parse, authorize, call ``gateway.playback`` / ``tokens`` / ``origin``,
respond. Domain errors map to JSON errors in ``gateway.app``.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from gateway.ads.inventory import Inventory
from gateway.ads.service import Stitcher, confirm_after_content, plan_ads, track_ad_segment
from gateway.playback import (
    MediaEntry,
    Movie,
    NotEntitled,
    PlaylistCache,
    check_rules,
    hls_root,
    iso_utc,
    load_movie,
    load_viewer,
    movie_categories,
    now_year,
    origin_key_for,
    resume_offset,
    save_progress,
)
from origin import OriginStore, object_key
from runtime.errors import BadRequest, Forbidden, NotFound, Unauthorized
from runtime.net import client_ip
from runtime.web import json_response, pg_key, read_json, redis_key, rkeys_key, settings_key
from tokens import TokenError, ip_prefix_of, new_session_id, segment_token_ttl
from tokens.service.sessions import PlaybackSession, SessionStore
from tokens.service.views import authenticate, keystore_key

origin_key = web.AppKey("origin", OriginStore)
playlists_key = web.AppKey("playlists", PlaylistCache)
sessions_key = web.AppKey("sessions", SessionStore)
progress_marks_key = web.AppKey("progress_marks", dict[str, float])
inventory_key = web.AppKey("inventory", Inventory)
stitcher_key = web.AppKey("stitcher", Stitcher)
confirmed_key = web.AppKey("confirmed_pods", set[tuple[str, int]])

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_CACHE_CONTROL = "public, max-age=2592000, immutable"
PLAYLIST_CACHE_CONTROL = "private, no-store"
PROGRESS_WRITE_EVERY_S = 20.0
PAGE_SIZE_MAX = 50


# ------------------------------------------------------------------ catalogue


def _movie_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "slug": row["slug"],
        "title": row["title"],
        "description": row["description"],
        "year": row["year"],
        "duration_s": row["duration_s"],
        "min_age": row["min_age"],
        "rating": row["rating"],
        "poster_url": f"/posters/{row['id']}.jpg" if row["poster_key"] else None,
        "categories": list(row["categories"] or []),
    }


_MOVIE_COLUMNS = """m.id, m.slug, m.title, m.description, m.year, m.duration_s, m.min_age,
    m.rating, m.poster_key, m.published_at,
    ARRAY(SELECT c.slug FROM movie_categories mc JOIN categories c ON c.id = mc.category_id
           WHERE mc.movie_id = m.id ORDER BY c.slug) AS categories"""


async def list_movies(request: web.Request) -> web.Response:
    """GET /v1/movies?q=&category=&cursor=&limit= -> {items, next_cursor}."""
    q = request.query.get("q", "").strip()[:200]
    category = request.query.get("category", "").strip()[:64]
    try:
        limit = min(PAGE_SIZE_MAX, max(1, int(request.query.get("limit", "20"))))
    except ValueError:
        raise BadRequest("'limit' must be an integer", code="invalid_request") from None
    cursor = request.query.get("cursor")
    after: tuple[float, str] | None = None
    if cursor:
        try:
            ts, mid = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            after = (float(ts), str(uuid.UUID(mid)))
        except (ValueError, TypeError):
            raise BadRequest("Malformed cursor", code="invalid_cursor") from None
    where = ["m.status = 'published'"]
    args: list[Any] = []
    if q:
        args.append(q)
        n = len(args)
        where.append(
            f"(m.search @@ plainto_tsquery('simple', ${n}) OR m.title ILIKE '%' || ${n} || '%')"
        )
    if category:
        args.append(category)
        where.append(
            "EXISTS (SELECT 1 FROM movie_categories mc JOIN categories c "  # noqa: S608
            f"ON c.id = mc.category_id WHERE mc.movie_id = m.id AND c.slug = ${len(args)})"
        )
    if after:
        args.extend([after[0], uuid.UUID(after[1])])
        where.append(
            f"(extract(epoch FROM m.published_at), m.id) < (${len(args) - 1}, ${len(args)})"
        )
    args.append(limit + 1)
    rows = await request.app[pg_key].fetch(
        f"SELECT {_MOVIE_COLUMNS}, extract(epoch FROM m.published_at) AS pub "  # noqa: S608
        f"FROM movies m WHERE {' AND '.join(where)} "
        f"ORDER BY m.published_at DESC, m.id DESC LIMIT ${len(args)}",
        *args,
    )
    items = [_movie_json(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        raw = orjson.dumps([float(last["pub"]), str(last["id"])])
        next_cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return json_response({"items": items, "next_cursor": next_cursor})


async def get_movie(request: web.Request) -> web.Response:
    """GET /v1/movies/{id}."""
    try:
        movie_id = uuid.UUID(request.match_info["movie_id"])
    except ValueError:
        raise NotFound("No such film", code="movie_not_found") from None
    row = await request.app[pg_key].fetchrow(
        f"SELECT {_MOVIE_COLUMNS} FROM movies m WHERE m.id = $1 AND m.status = 'published'",  # noqa: S608
        movie_id,
    )
    if row is None:
        raise NotFound("No such film", code="movie_not_found")
    return json_response(_movie_json(row))


async def poster(request: web.Request) -> web.StreamResponse:
    """GET /posters/{movie_id}.jpg -> the poster (public, cacheable)."""
    movie = await load_movie(request.app[pg_key], request.match_info["movie_id"])
    return await request.app[origin_key].serve(
        request, origin_key_for(movie.id, "poster.jpg"), cache_control="public, max-age=86400"
    )


# ------------------------------------------------------------------ playback sessions


async def start_playback(request: web.Request) -> web.Response:
    """POST /v1/playback/{movie_id} -> 201 {session_id, manifest_url, expires_at, ads}."""
    claims = await authenticate(request)
    app = request.app
    settings = app[settings_key]
    pool = app[pg_key]
    movie = await load_movie(pool, request.match_info["movie_id"])
    viewer = await load_viewer(pool, claims.sub)
    country = request.headers.get(settings.geo_header)
    check_rules(movie, viewer, country, year=now_year())
    master = await app[playlists_key].master(
        movie, max_height=viewer.max_height, preferred=settings.data_saver_height
    )
    if not master.variants:
        raise NotEntitled("Your plan includes no rendition of this film")
    now = int(time.time())
    ip = client_ip(request, settings.trusted_proxy_hops)
    region = request.headers.get(settings.region_header)
    ad_plan = None
    renditions: list[tuple[str, int | None, str]] = []
    if viewer.ads:
        # what the session's pods must line up across (ad sessions only)
        renditions = await _content_renditions(request, movie, master.variants)
        first = renditions[0]
        entry = await app[playlists_key].media(movie.id, movie.version, first[0], "index.m3u8")
        ad_plan = await plan_ads(
            app[inventory_key],
            user_id=viewer.id,
            plan=viewer.plan,
            country=country,
            region=region,
            categories=await movie_categories(pool, movie.id),
            movie_id=movie.id,
            content=entry.parsed,
        )
    session = PlaybackSession(
        id=new_session_id(),
        user_id=viewer.id,
        movie_id=movie.id,
        plan=viewer.plan,
        renditions=tuple(sorted(master.renditions)),
        created_at=now,
        expires_at=now + segment_token_ttl(movie.duration_s),
        family_id=claims.sid,
        client_ip=ip,
        ip_prefix=ip_prefix_of(ip) if settings.segment_ip_binding else None,
        user_agent=request.headers.get("User-Agent"),
        country=country,
        region=region,
        start_offset=await resume_offset(pool, viewer.id, movie),
        ad_plan=ad_plan,
        extra={
            "version": movie.version,
            "max_height": viewer.max_height,
            "content_renditions": [list(r) for r in renditions],
        },
    )
    await app[sessions_key].create(session, max_streams=viewer.max_streams)
    path = hls_root(movie.id) + "master.m3u8"
    token = _signer(request, session).sign(path)
    return json_response(
        {
            "session_id": session.id,
            "manifest_url": f"{_base_url(request)}{path}?t={token}",
            "expires_at": iso_utc(session.expires_at),
            "ads": bool(ad_plan),
            "start_offset": session.start_offset,
            "renditions": list(session.renditions),
        },
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def _content_renditions(
    request: web.Request, movie: Movie, variants: Any
) -> list[tuple[str, int | None, str]]:
    """(name, height, container) of every media playlist the session may play, in
    master order: what ad pods must align across."""
    root = hls_root(movie.id)
    playlists = request.app[playlists_key]
    paths = [(v.path, v.height) for v in variants]
    paths += [(path, None) for path in await playlists.audio_playlists(movie)]
    out: list[tuple[str, int | None, str]] = []
    for path, height in paths:
        rendition, _, name = path.removeprefix(root).partition("/")
        entry = await playlists.media(movie.id, movie.version, rendition, name)
        out.append((rendition, height, entry.container))
    return out


async def end_playback(request: web.Request) -> web.Response:
    """DELETE /v1/playback/{session_id} -> 204; frees the stream slot."""
    claims = await authenticate(request)
    ended = await request.app[sessions_key].end(
        request.match_info["session_id"], reason="stopped", user_id=claims.sub
    )
    if not ended:
        raise NotFound("No such playback session", code="session_not_found")
    return web.Response(status=204)


def _base_url(request: web.Request) -> str:
    settings = request.app[settings_key]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"{request.scheme}://{request.host}"


def _signer(request: web.Request, session: PlaybackSession) -> Any:
    ring = request.app[keystore_key].keys.segments
    return ring.session_signer(session.id, session.expires_at, ip_prefix=session.ip_prefix)


# ------------------------------------------------------------------ HLS


async def _session_for(request: web.Request) -> PlaybackSession:
    """Verify this URI's token (no database) and load its live session (cached)."""
    token = request.query.get("t")
    if not token:
        raise Unauthorized("A playback token is required", code="token_required")
    app = request.app
    settings = app[settings_key]
    ring = app[keystore_key].keys.segments
    ip = client_ip(request, settings.trusted_proxy_hops)
    try:
        claims = ring.verify(token, request.rel_url.raw_path, now=int(time.time()), client_ip=ip)
    except TokenError as err:
        raise Forbidden("Invalid or expired playback token", code=err.code) from err
    session = await app[sessions_key].get(claims.session_id)
    if session is None:
        raise Forbidden("This playback session has ended", code="session_revoked")
    movie_id = request.match_info.get("movie_id")
    if movie_id is not None and session.movie_id != movie_id:
        raise Forbidden("Token does not match this film", code="invalid_token")
    return session


def _check_hotlink(request: web.Request) -> None:
    allowed = request.app[settings_key].hotlink_allowed_hosts
    if not allowed:
        return
    for header in ("Origin", "Referer"):
        value = request.headers.get(header)
        if value:
            host = value.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
            if host not in allowed:
                raise Forbidden("Playback from this site is not allowed", code="hotlink_denied")


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
    app = request.app
    movie = await _movie_of(request, session)
    master = await app[playlists_key].master(
        movie,
        max_height=int(session.extra.get("max_height", 0)),
        preferred=app[settings_key].data_saver_height,
    )
    tokens = _signer(request, session).sign_many(master.paths)
    return _playlist_response(request, master.render(tokens, start_offset=session.start_offset))


async def _movie_of(request: web.Request, session: PlaybackSession) -> Movie:
    return await load_movie(request.app[pg_key], session.movie_id)


async def rendition_file(request: web.Request) -> web.StreamResponse:
    """GET /hls/{movie_id}/{rendition}/{name}?t= -> media playlist or segment bytes."""
    session = await _session_for(request)
    rendition = request.match_info["rendition"]
    name = request.match_info["name"]
    if rendition not in session.renditions:
        raise NotEntitled("Your plan does not include this rendition")
    app = request.app
    version = int(session.extra.get("version", 1))
    if name.endswith(".m3u8"):
        _check_hotlink(request)
        entry = await app[playlists_key].media(session.movie_id, version, rendition, name)
        text = await _media_text(request, session, entry, rendition, name)
        return _playlist_response(request, text)
    key = origin_key_for(session.movie_id, rendition, name)
    await app[sessions_key].heartbeat(session)
    await _after_content_segment(request, session, version, rendition)
    return await app[origin_key].serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)


async def _media_text(
    request: web.Request, session: PlaybackSession, entry: MediaEntry, rendition: str, name: str
) -> str:
    """The session's media playlist: tokenized, with its ad pods stitched in if any."""
    signer = _signer(request, session)
    renditions = [
        (str(r[0]), int(r[1]) if r[1] is not None else None, str(r[2]))
        for r in session.extra.get("content_renditions", [])
    ]
    stitchable = [r for r in renditions if r[0] == rendition]
    if not session.ad_plan or not stitchable or entry.parsed.i_frames_only:
        # no ads; or an I-frame (trick-play) or subtitle playlist, which carry no pods
        return entry.template.render(
            signer.sign_many(entry.template.paths), start_offset=session.start_offset
        )
    height = stitchable[0][1]
    stitched = await request.app[stitcher_key].stitched(
        movie_id=session.movie_id,
        version=int(session.extra.get("version", 1)),
        rendition=rendition,
        name=name,
        text=entry.text,
        ad_plan=session.ad_plan,
        renditions=renditions,
        content_height=height,
        content_container=entry.container,
    )
    offset = session.start_offset
    return stitched.render(
        signer.sign_many(stitched.paths),
        start_offset=stitched.output_time(offset) if offset is not None else None,
    )


async def ad_segment(request: web.Request) -> web.StreamResponse:
    """GET /hls/ads/{ad_id}/{rendition}/{name}?t= -> ad bytes (same path for every viewer,
    so the edge caches them), counted as impressions, quartiles and completes."""
    session = await _session_for(request)
    ad_id = request.match_info["ad_id"]
    plan = session.ad_plan or {}
    if not any(a["ad_id"] == ad_id for p in plan.get("pods", []) for a in p["ads"]):
        raise Forbidden("This ad is not part of the session", code="invalid_token")
    rendition, name = request.match_info["rendition"], request.match_info["name"]
    key = object_key("ads", ad_id, rendition, name)
    app = request.app
    await app[sessions_key].heartbeat(session)
    if not name.endswith(".m3u8"):
        await track_ad_segment(
            app[redis_key],
            app[rkeys_key],
            app[stitcher_key].library,
            session_id=session.id,
            ad_plan=plan,
            ad_id=ad_id,
            rendition=rendition,
            path=request.rel_url.raw_path,
        )
    return await app[origin_key].serve(request, key, cache_control=SEGMENT_CACHE_CONTROL)


async def _after_content_segment(
    request: web.Request, session: PlaybackSession, version: int, rendition: str
) -> None:
    """Confirm ad pods played past, and derive the viewer's position (throttled)."""
    app = request.app
    marks = app[progress_marks_key]
    now = time.monotonic()
    due = now - marks.get(session.id, 0.0) >= PROGRESS_WRITE_EVERY_S
    if not due and not session.ad_plan:
        return
    try:
        entry = await app[playlists_key].media(session.movie_id, version, rendition, "index.m3u8")
    except Exception:  # tracking is best effort: never fail a segment because of it
        return
    start = entry.starts.get(request.rel_url.raw_path)
    if start is None:
        return
    if session.ad_plan:
        await confirm_after_content(
            app[redis_key],
            app[rkeys_key],
            app[confirmed_key],
            session_id=session.id,
            ad_plan=session.ad_plan,
            content_time=start,
        )
    if not due:
        return
    if len(marks) > 50_000:
        marks.clear()
    marks[session.id] = now
    await save_progress(
        request.app[pg_key], session.user_id, session.movie_id, start, entry.duration
    )


async def put_progress(request: web.Request) -> web.Response:
    """PUT /v1/me/progress/{movie_id} {position_s, duration_s?} -> 204."""
    claims = await authenticate(request)
    movie = await load_movie(request.app[pg_key], request.match_info["movie_id"])
    body = await read_json(request)
    position = body.get("position_s")
    if (
        not isinstance(position, int | float)
        or isinstance(position, bool)
        or not 0 <= position <= 86_400
    ):
        raise BadRequest("'position_s' must be a number of seconds", code="invalid_request")
    await save_progress(
        request.app[pg_key], claims.sub, movie.id, float(position), movie.duration_s
    )
    return web.Response(status=204)


async def history(request: web.Request) -> web.Response:
    """GET /v1/me/history -> recently watched films with resume positions."""
    claims = await authenticate(request)
    rows = await request.app[pg_key].fetch(
        """SELECT w.movie_id, w.position_s, w.duration_s, w.completed, w.updated_at, m.title
             FROM watch_progress w JOIN movies m ON m.id = w.movie_id
            WHERE w.user_id = $1 ORDER BY w.updated_at DESC LIMIT 50""",
        uuid.UUID(claims.sub),
    )
    items = [
        {
            "movie_id": str(r["movie_id"]),
            "title": r["title"],
            "position_s": r["position_s"],
            "duration_s": r["duration_s"],
            "completed": r["completed"],
            "updated_at": r["updated_at"].isoformat(),
        }
        for r in rows
    ]
    return json_response({"items": items}, headers={"Cache-Control": "no-store"})


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


def setup_routes(app: web.Application) -> None:
    """Mount the gateway's playback API and HLS routes."""
    r = app.router
    r.add_get("/v1/movies", list_movies)
    r.add_get("/v1/movies/{movie_id}", get_movie)
    r.add_get("/posters/{movie_id}.jpg", poster)
    r.add_post("/v1/playback/{movie_id}", start_playback)
    r.add_delete("/v1/playback/{session_id}", end_playback)
    r.add_put("/v1/me/progress/{movie_id}", put_progress)
    r.add_get("/v1/me/history", history)
    r.add_get("/hls/{movie_id}/master.m3u8", master_playlist)
    r.add_get("/hls/ads/{ad_id}/{rendition}/{name}", ad_segment)
    r.add_get("/hls/{movie_id}/{rendition}/{name}", rendition_file)
    r.add_route("OPTIONS", "/hls/{tail:.*}", cors_preflight)
