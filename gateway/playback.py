"""Playback domain: entitlement rules, starting sessions, the session's playlists, and
the bookkeeping a segment fetch triggers.

No HTTP here: the views parse the request, call these functions and build the response;
errors are the domain errors of ``gateway.errors``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis

from billing.store import grace_of
from gateway import repository
from gateway.ads.inventory import Inventory
from gateway.ads.service import Stitcher, confirm_after_content, plan_ads, track_ad_segment
from gateway.errors import (
    AgeRestricted,
    GeoBlocked,
    NotEntitled,
    PlanChanged,
    PlaybackTokenRejected,
    SessionEnded,
)
from gateway.playlists import PlaylistCache, hls_root
from gateway.repository import Movie, Viewer
from hls import ContentRendition, MasterTemplate, PlaylistError
from origin import OriginStore
from runtime.redis import Keys
from runtime.settings import Settings
from tokens import SegmentKeyring, SessionSigner, TokenError, new_session_id, segment_token_ttl
from tokens.service.sessions import (
    PLAN_CHANGED,
    AdPlan,
    PlaybackSession,
    SessionStore,
    ended_reason,
)

log = logging.getLogger(__name__)

RESUME_MIN_S = 30.0
RESUME_END_MARGIN_S = 60.0
PROGRESS_WRITE_EVERY_S = 20.0
PROGRESS_MARKS_MAX = 50_000


@dataclass(slots=True, kw_only=True)
class Playback:
    """What the playback domain works with, built once per gateway process."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    keys: Keys
    origin: OriginStore
    playlists: PlaylistCache
    sessions: SessionStore
    inventory: Inventory
    stitcher: Stitcher
    #: (session, pod index) pairs whose impressions this process has confirmed
    confirmed: set[tuple[str, int]] = field(default_factory=set)
    #: when this process last wrote each session's progress (monotonic seconds)
    progress_marks: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewing:
    """Who starts playback and from where, as the request tells it."""

    user_id: str
    family_id: str | None
    country: str | None
    region: str | None
    client_ip: str | None
    ip_prefix: str | None
    user_agent: str | None


# ------------------------------------------------------------------ rules


def check_rules(movie: Movie, viewer: Viewer, country: str | None, *, year: int) -> None:
    """Geo and age rules; raise the matching domain error."""
    code = (country or "").strip().upper()
    known = len(code) == 2 and code.isalpha() and code not in {"XX", "T1"}
    if known and code in movie.geo_block:
        raise GeoBlocked()
    if movie.geo_allow is not None and (not known or code not in movie.geo_allow):
        raise GeoBlocked()
    too_young = viewer.birth_year is None or year - viewer.birth_year < movie.min_age
    if movie.min_age > 0 and too_young:
        raise AgeRestricted()


def iso_utc(ts: int) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-11-29T14:00:00Z``)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_year() -> int:
    return time.gmtime().tm_year


# ------------------------------------------------------------------ progress


async def resume_offset(pool: asyncpg.Pool, user_id: str, movie: Movie) -> float | None:
    """Where to resume a film left part-way, or None to start at the beginning."""
    found = await repository.read_progress(pool, user_id, movie.id)
    if found is None or found[1]:
        return None
    position = found[0]
    if position < RESUME_MIN_S or position > movie.duration_s - RESUME_END_MARGIN_S:
        return None
    return position


async def save_progress(
    pool: asyncpg.Pool, user_id: str, movie_id: str, position: float, duration: float | None
) -> None:
    """Record the viewer's position; near the end counts as completed."""
    completed = duration is not None and position >= duration - RESUME_END_MARGIN_S
    await repository.write_progress(
        pool, user_id, movie_id, position, duration, completed=completed
    )


# ------------------------------------------------------------------ sessions


async def start_session(pb: Playback, movie_id: str, who: Viewing) -> PlaybackSession:
    """Check the film, the plan and the rules, decide the ad plan once, and store a new
    session (refused beyond the plan's stream limit)."""
    movie = await repository.load_movie(pb.pool, movie_id)
    viewer = await repository.load_viewer(pb.pool, who.user_id, grace=grace_of(pb.settings))
    check_rules(movie, viewer, who.country, year=now_year())
    master = await pb.playlists.master(
        movie, max_height=viewer.max_height, preferred=pb.settings.data_saver_height
    )
    if not master.variants:
        raise NotEntitled("Your plan includes no rendition of this film")
    renditions: tuple[ContentRendition, ...] = ()
    ad_plan: AdPlan = ()
    if viewer.ads:
        # what the session's pods must line up across (ad sessions only)
        renditions = await content_renditions(pb, movie, master)
        entry = await pb.playlists.media(movie.id, movie.version, renditions[0].name, "index.m3u8")
        ad_plan = await plan_ads(
            pb.inventory,
            pb.stitcher,
            renditions=renditions,
            user_id=viewer.id,
            plan=viewer.plan,
            country=who.country,
            region=who.region,
            categories=await repository.movie_categories(pb.pool, movie.id),
            movie_id=movie.id,
            content=entry.parsed,
        )
    now = int(time.time())
    session = PlaybackSession(
        id=new_session_id(),
        user_id=viewer.id,
        movie_id=movie.id,
        plan=viewer.plan,
        renditions=tuple(sorted(master.renditions)),
        created_at=now,
        expires_at=now + segment_token_ttl(movie.duration_s),
        version=movie.version,
        max_height=viewer.max_height,
        content_renditions=renditions,
        family_id=who.family_id,
        ad_plan=ad_plan,
        client_ip=who.client_ip,
        ip_prefix=who.ip_prefix,
        user_agent=who.user_agent,
        country=who.country,
        region=who.region,
        start_offset=await resume_offset(pb.pool, viewer.id, movie),
    )
    await pb.sessions.create(session, max_streams=viewer.max_streams)
    return session


async def content_renditions(
    pb: Playback, movie: Movie, master: MasterTemplate
) -> tuple[ContentRendition, ...]:
    """Every media playlist the session may play, in master order: what ad pods must
    align across (video variants, then alternate audio)."""
    root = hls_root(movie.id)
    paths: list[tuple[str, int | None]] = [(v.path, v.height) for v in master.variants]
    paths += [(path, None) for path in await pb.playlists.audio_playlists(movie)]
    out: list[ContentRendition] = []
    for path, height in paths:
        rendition, _, name = path.removeprefix(root).partition("/")
        entry = await pb.playlists.media(movie.id, movie.version, rendition, name)
        out.append(ContentRendition(rendition, height, entry.container))
    return tuple(out)


def session_signer(ring: SegmentKeyring, session: PlaybackSession) -> SessionSigner:
    """Signs the URIs of one session's playlists."""
    return ring.session_signer(session.id, session.expires_at, ip_prefix=session.ip_prefix)


async def authorize_uri(
    pb: Playback,
    ring: SegmentKeyring,
    *,
    token: str,
    raw_path: str,
    client_ip: str | None,
    movie_id: str | None,
) -> PlaybackSession:
    """Verify one URI's token (no database) and load its live session (cached)."""
    try:
        claims = ring.verify(token, raw_path, now=int(time.time()), client_ip=client_ip)
    except TokenError as err:
        raise PlaybackTokenRejected(code=err.code) from err
    session = await pb.sessions.get(claims.session_id)
    if session is None:
        if await ended_reason(pb.sessions, claims.session_id) == PLAN_CHANGED:
            raise PlanChanged()
        raise SessionEnded()
    if movie_id is not None and session.movie_id != movie_id:
        raise PlaybackTokenRejected("Token does not match this film")
    return session


def check_rendition(session: PlaybackSession, rendition: str) -> None:
    """The session's plan must include the rendition folder."""
    if rendition not in session.renditions:
        raise NotEntitled("Your plan does not include this rendition")


def check_ad(session: PlaybackSession, ad_id: str) -> None:
    """Only creatives planned in the session's pods may be fetched with its tokens."""
    if ad_id not in session.ad_ids():
        raise PlaybackTokenRejected("This ad is not part of the session")


# ------------------------------------------------------------------ playlists


async def master_text(pb: Playback, session: PlaybackSession, signer: SessionSigner) -> str:
    """The session's tier-filtered master playlist with a token on every URI."""
    movie = await repository.load_movie(pb.pool, session.movie_id)
    master = await pb.playlists.master(
        movie, max_height=session.max_height, preferred=pb.settings.data_saver_height
    )
    return master.render(signer.sign_many(master.paths), start_offset=session.start_offset)


async def media_text(
    pb: Playback, session: PlaybackSession, rendition: str, name: str, signer: SessionSigner
) -> str:
    """The session's media playlist: tokenized, with its ad pods stitched in if any."""
    check_rendition(session, rendition)
    entry = await pb.playlists.media(session.movie_id, session.version, rendition, name)
    stitchable = [r for r in session.content_renditions if r.name == rendition]
    if not session.ad_plan or not stitchable or entry.parsed.i_frames_only:
        # no ads; or an I-frame (trick-play) or subtitle playlist, which carry no pods
        return entry.template.render(
            signer.sign_many(entry.template.paths), start_offset=session.start_offset
        )
    try:
        stitched = await pb.stitcher.stitched(
            movie_id=session.movie_id,
            version=session.version,
            rendition=rendition,
            name=name,
            text=entry.text,
            ad_plan=session.ad_plan,
            renditions=session.content_renditions,
            content_height=stitchable[0].height,
            content_container=entry.container,
        )
    except (PlaylistError, ValueError) as err:  # ads are best effort: serve the film
        log.warning("stitching failed, serving without ads: %s", type(err).__name__)
        pb.stitcher.on_fallback("stitch_failed")
        return entry.template.render(
            signer.sign_many(entry.template.paths), start_offset=session.start_offset
        )
    offset = session.start_offset
    return stitched.render(
        signer.sign_many(stitched.paths),
        start_offset=stitched.output_time(offset) if offset is not None else None,
    )


# ------------------------------------------------------------------ segment bookkeeping


async def record_content_fetch(
    pb: Playback, session: PlaybackSession, rendition: str, path: str
) -> None:
    """Everything a content segment fetch means besides its bytes: the stream's
    heartbeat, confirming ad pods the viewer played past, and the viewer's position
    (throttled to one write per ``PROGRESS_WRITE_EVERY_S`` per session)."""
    await pb.sessions.heartbeat(session)
    marks = pb.progress_marks
    now = time.monotonic()
    due = now - marks.get(session.id, 0.0) >= PROGRESS_WRITE_EVERY_S
    if not due and not session.ad_plan:
        return
    try:
        entry = await pb.playlists.media(session.movie_id, session.version, rendition, "index.m3u8")
    except Exception:  # bookkeeping is best effort: never fail a segment because of it
        log.debug("no media playlist for progress of %s", rendition, exc_info=True)
        return
    start = entry.starts.get(path)
    if start is None:
        return
    if session.ad_plan:
        await confirm_after_content(
            pb.redis,
            pb.keys,
            pb.confirmed,
            session_id=session.id,
            ad_plan=session.ad_plan,
            content_time=start,
        )
    if not due:
        return
    if len(marks) > PROGRESS_MARKS_MAX:
        marks.clear()
    marks[session.id] = now
    await save_progress(pb.pool, session.user_id, session.movie_id, start, entry.duration)


async def record_ad_fetch(
    pb: Playback, session: PlaybackSession, ad_id: str, rendition: str, path: str
) -> None:
    """An ad segment fetch: the stream's heartbeat and the ad's delivery events
    (impression, quartiles, complete)."""
    await pb.sessions.heartbeat(session)
    await track_ad_segment(
        pb.redis,
        pb.keys,
        pb.stitcher.library,
        session_id=session.id,
        ad_plan=session.ad_plan,
        ad_id=ad_id,
        rendition=rendition,
        path=path,
    )
