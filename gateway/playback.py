"""Playback domain: entitlement rules, starting sessions, the session's playlists, and
the bookkeeping a segment fetch triggers.

No HTTP here: the views parse the request, call these functions and build the response;
errors are the domain errors of ``gateway.errors``.

A segment never waits on PostgreSQL: the viewer's position goes through a bounded
in-process queue (:class:`ProgressQueue`) that a background task writes; when the queue
is full a position is dropped (``kush_progress_dropped_total``), the next one replaces it.
Bookkeeping that needs Redis (heartbeats, ad events) is skipped while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from billing.store import grace_of
from gateway import repository
from gateway.ads.decide import LightAds
from gateway.ads.inventory import Inventory
from gateway.ads.service import Stitcher, confirm_after_content, plan_ads, track_ad_segment
from gateway.batches import DB_ERRORS, InFlight
from gateway.errors import (
    AgeRestricted,
    GatewayError,
    GeoBlocked,
    NotEntitled,
    PlaybackTokenRejected,
    TokenRequired,
)
from gateway.metering import Tally, UsageKey, UsageMeter, usage_rows, utc_day
from gateway.metrics import forget_active, note_active
from gateway.playlists import Layouts, PlaylistCache, hls_root
from gateway.repository import Movie, Viewer
from hls import ContentRendition, MasterTemplate, PlaylistError, VariantRef
from origin import OriginStore
from runtime.errors import TooManyRequests
from runtime.redis import Keys
from runtime.settings import Settings
from runtime.together import both
from tokens import (
    SegmentKeyring,
    SessionSealer,
    TokenError,
    ip_prefix_of,
    segment_token_ttl,
)
from tokens.service.playback_session import AdPlan, PlaybackSession
from tokens.service.sessions import SessionRefused, SessionStore, session_id_for

log = logging.getLogger(__name__)

RESUME_MIN_S = 30.0
RESUME_END_MARGIN_S = 60.0
PROGRESS_WRITE_EVERY_S = 20.0
#: how long a read waits for the background writer's batch holding the viewer's positions
PROGRESS_SETTLE_S = 2.0
PROGRESS_MARKS_MAX = 50_000
PROGRESS_QUEUE_MAX = 10_000
PROGRESS_BATCH = 500
PROGRESS_RETRY_S = 1.0
PROGRESS_FLUSH_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressMark:
    """A viewer's position in a film, as a segment fetch told it (``at``: wall clock)."""

    user_id: str
    movie_id: str
    position: float
    duration: float | None
    at: float


ProgressWrite = Callable[[Sequence[ProgressMark]], Awaitable[None]]


class ProgressQueue:
    """Positions waiting to be written: bounded, newest per viewer and film wins.

    ``offer`` never blocks (a segment must not wait); ``run`` writes in the background
    and keeps what a failed write held (unless something newer arrived meanwhile)."""

    def __init__(self, *, maxsize: int, dropped: Counter, retry_s: float = PROGRESS_RETRY_S):
        self.maxsize = maxsize
        self.dropped = dropped
        self.retry_s = retry_s
        self._pending: dict[tuple[str, str], ProgressMark] = {}
        self._ready = asyncio.Event()
        self._flight = InFlight()  # the batch the background writer is writing now

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, mark: ProgressMark) -> bool:
        """Queue a position; False (and counted) when the queue is full."""
        key = (mark.user_id, mark.movie_id)
        queued = self._pending.get(key)
        if queued is None and len(self._pending) >= self.maxsize:
            self.dropped.inc()
            return False
        if queued is None or queued.at <= mark.at:
            self._pending[key] = mark
        self._ready.set()
        return True

    def requeue(self, marks: Sequence[ProgressMark]) -> None:
        """Put back what a failed write held, never over a newer position."""
        for mark in marks:
            key = (mark.user_id, mark.movie_id)
            queued = self._pending.get(key)
            if queued is not None and queued.at >= mark.at:
                continue
            if queued is None and len(self._pending) >= self.maxsize:
                self.dropped.inc()
                continue
            self._pending[key] = mark
        if self._pending:
            self._ready.set()

    def take_viewer(self, user_id: str) -> list[ProgressMark]:
        """Every queued position of one viewer, removed from the queue."""
        keys = [key for key in self._pending if key[0] == user_id]
        batch = [self._pending.pop(key) for key in keys]
        if not self._pending:
            self._ready.clear()
        return batch

    def take(self, limit: int = PROGRESS_BATCH) -> list[ProgressMark]:
        """Up to ``limit`` queued positions, removed from the queue."""
        batch: list[ProgressMark] = []
        for key in list(self._pending)[:limit]:
            batch.append(self._pending.pop(key))
        if not self._pending:
            self._ready.clear()
        return batch

    async def run(self, write: ProgressWrite) -> None:
        """Write queued positions until cancelled (a failed batch is requeued, and the
        writer pauses ``retry_s`` before the next)."""
        while True:
            await self._ready.wait()
            batch = self.take()
            if not batch:
                continue
            viewers = (mark.user_id for mark in batch)
            if not await self._flight.write(
                write, batch, viewers=viewers, keep=self.requeue, what="progress"
            ):
                await asyncio.sleep(self.retry_s)

    async def settle(
        self, write: ProgressWrite, user_id: str, *, timeout_s: float = PROGRESS_SETTLE_S
    ) -> None:
        """Write this viewer's queued positions now (after a batch in flight with them,
        waited for within ``timeout_s``), so a read that follows sees them; on a
        database error they are requeued and the error raised."""
        await self._flight.settle(
            user_id,
            take=self.take_viewer,
            write=write,
            keep=self.requeue,
            timeout_s=timeout_s,
        )

    async def flush(self, write: ProgressWrite, *, timeout_s: float = PROGRESS_FLUSH_S) -> bool:
        """Write what is left (at shutdown); False when it could not within the time."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._pending:
                    await write(self.take())
        except DB_ERRORS as exc:  # TimeoutError is an OSError
            log.warning(
                "%d progress positions not written at shutdown (%s)", len(self), type(exc).__name__
            )
            return False
        return True


def _uncounted(*_labels: str) -> None:
    """A counter hook that counts nothing (the default, for code and tests without
    metrics)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackCounters:
    """What the playback domain counts, as hooks (`gateway.metrics` wires them)."""

    #: a playback start: (``started``, ``""``) or (``refused``, the code the player got)
    start: Callable[[str, str], None] = _uncounted
    #: a refused playback token (signed HLS URI), by the code the player gets
    token_reject: Callable[[str], None] = _uncounted


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
    #: segment requests each session has in flight in this process (``segment_slot``)
    segments_in_flight: dict[str, int] = field(default_factory=dict)
    #: (session, pod index) pairs whose impressions this process has confirmed
    confirmed: set[tuple[str, int]] = field(default_factory=set)
    #: positions waiting for the background writer
    progress: ProgressQueue
    #: playlist templates laid out as bytes, with their path digests
    layouts: Layouts = field(default_factory=Layouts)
    #: when this process last queued each session's progress (monotonic seconds)
    progress_marks: dict[str, float] = field(default_factory=dict)
    #: bytes delivered, counted here and added to PostgreSQL in batches (README "Data")
    usage: UsageMeter
    counters: PlaybackCounters = field(default_factory=PlaybackCounters)


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
    #: the request asked to save data (``Save-Data: on``)
    save_data: bool = False


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


async def settle_progress(pb: Playback, user_id: str) -> None:
    """Write this process's queued positions of one viewer now, so what the viewer reads
    next (history, a resume position) includes them."""
    await pb.progress.settle(functools.partial(write_progress, pb.pool), user_id)


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
    session (refused beyond the plan's stream limit).

    Independent reads overlap (the film and the account; the resume position and the
    film's categories with the playlist work); each result is awaited where the steps
    needed it one after another, so a failed start reports the same error as before
    (a missing film before an account problem, and so on)."""
    movie, viewer = await both(
        repository.load_movie(pb.pool, movie_id),
        repository.load_viewer(pb.pool, who.user_id, grace=grace_of(pb.settings)),
    )
    check_rules(movie, viewer, who.country, year=now_year())
    await settle_progress(pb, viewer.id)  # before the resume position is read
    resume = asyncio.ensure_future(resume_offset(pb.pool, viewer.id, movie))
    categories = (
        asyncio.ensure_future(repository.movie_categories(pb.pool, movie.id))
        if viewer.ads
        else None
    )
    try:
        return await _new_session(pb, movie, viewer, who, resume=resume, categories=categories)
    finally:
        await _drop(resume, categories)  # done already unless the start failed


async def _drop(*tasks: asyncio.Future[Any] | None) -> None:
    """Wait for early reads a failed start no longer needs, dropping what they return or
    raise. Not cancelled: cancelling a query in flight costs asyncpg a cancel request on
    a new connection, more than the short read it would save."""
    await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)


async def _new_session(
    pb: Playback,
    movie: Movie,
    viewer: Viewer,
    who: Viewing,
    *,
    resume: Awaitable[float | None],
    categories: Awaitable[frozenset[str]] | None,
) -> PlaybackSession:
    """The session's renditions and ad plan, stored (``resume`` and ``categories``: the
    reads started early)."""
    data_saver = viewer.data_saver or who.save_data
    max_height = viewer.max_height
    if data_saver:
        plan_master = await pb.playlists.master(
            movie, max_height=viewer.max_height, preferred=pb.settings.data_saver_height
        )
        max_height = saver_max_height(
            [v.height for v in plan_master.variants],
            plan_max_height=viewer.max_height,
            saver_max_height=pb.settings.data_saver_max_height,
        )
    master = await session_master(pb, movie, max_height=max_height, data_saver=data_saver)
    if not master.variants:
        raise NotEntitled("Your plan includes no rendition of this film")
    renditions: tuple[ContentRendition, ...] = ()
    ad_plan: AdPlan = ()
    if categories is not None:  # an ad session (``viewer.ads``)
        # what the session's pods must line up across
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
            categories=await categories,
            movie_id=movie.id,
            content=entry.parsed,
            light=light_ads(pb.settings) if data_saver else None,
        )
    now = int(time.time())
    session = PlaybackSession(
        id=session_id_for(viewer.id),
        user_id=viewer.id,
        movie_id=movie.id,
        plan=viewer.plan,
        renditions=tuple(sorted(master.renditions)),
        created_at=now,
        expires_at=now + segment_token_ttl(movie.duration_s),
        version=movie.version,
        max_height=max_height,
        content_renditions=renditions,
        family_id=who.family_id,
        ad_plan=ad_plan,
        client_ip=who.client_ip,
        ip_prefix=who.ip_prefix,
        user_agent=who.user_agent,
        country=who.country,
        region=who.region,
        start_offset=await resume,
        max_streams=viewer.max_streams,
        data_saver=data_saver,
    )
    await pb.sessions.create(session)
    await _seen_playing(pb, session.id)
    return session


async def stop_session(pb: Playback, session_id: str, user_id: str) -> bool:
    """The viewer stopped: end the session (False if it is not theirs or already ended)
    and stop counting it as active."""
    ended = await pb.sessions.end(session_id, reason="stopped", user_id=user_id)
    if ended:
        try:
            await forget_active(pb.redis, pb.keys, session_id)
        except RedisError as exc:
            log.debug("active session not forgotten: Redis unavailable (%s)", type(exc).__name__)
    return ended


async def _seen_playing(pb: Playback, session_id: str) -> None:
    """Mark the session active now (``kush_playback_sessions_active``); best effort."""
    try:
        await note_active(pb.redis, pb.keys, session_id, time.time())
    except RedisError as exc:
        log.debug("active session not noted: Redis unavailable (%s)", type(exc).__name__)


# ------------------------------------------------------------------ the data saver


def saver_max_height(
    heights: Sequence[int | None], *, plan_max_height: int, saver_max_height: int
) -> int:
    """The tallest rendition a data-saver session may play: ``KUSH_DATA_SAVER_MAX_HEIGHT``
    within the plan; a film with no video rendition that low plays its smallest one."""
    cap = min(plan_max_height, saver_max_height)
    video = [h for h in heights if h and h <= plan_max_height]
    if video and all(h > cap for h in video):
        return min(video)
    return cap


def start_height(variants: Sequence[VariantRef], *, data_saver: bool, preferred: int) -> int:
    """The height listed first in the master: the smallest video rendition for a
    data-saver session, else ``KUSH_DATA_SAVER_HEIGHT`` (or the next one below it)."""
    video = [v.height for v in variants if v.height]
    if data_saver and video:
        return min(video)
    return preferred


async def session_master(
    pb: Playback, movie: Movie, *, max_height: int, data_saver: bool
) -> MasterTemplate:
    """The session's master template: renditions up to ``max_height``, in the order
    the session lists them (smallest first for the data saver)."""
    preferred = pb.settings.data_saver_height
    master = await pb.playlists.master(movie, max_height=max_height, preferred=preferred)
    first = start_height(master.variants, data_saver=data_saver, preferred=preferred)
    if first != preferred:
        master = await pb.playlists.master(movie, max_height=max_height, preferred=first)
    return master


def light_ads(settings: Settings) -> LightAds:
    """The data saver's ad load, from the settings."""
    return LightAds(
        max_ad_s=float(settings.data_saver_ad_max_s),
        midroll_every_s=float(settings.data_saver_midroll_every_s),
    )


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


def session_sealer(ring: SegmentKeyring, session: PlaybackSession) -> SessionSealer:
    """Signs the URIs of one session's playlists (version 2 tokens)."""
    return ring.session_sealer(session.id, session.expires_at, ip_prefix=session.ip_prefix)


async def authorize_uri(
    pb: Playback,
    ring: SegmentKeyring,
    *,
    token: str | None,
    raw_path: str,
    client_ip: str | None,
    movie_id: str | None,
) -> PlaybackSession:
    """Verify one URI's token (no database) and load its live session (cached; a
    session that ended raises :class:`~tokens.service.sessions.SessionGone`). No token
    raises :class:`~gateway.errors.TokenRequired`; every refusal is counted by its code."""
    try:
        if not token:
            raise TokenRequired()
        try:
            claims = ring.verify(token, raw_path, now=int(time.time()), client_ip=client_ip)
        except TokenError as err:
            raise PlaybackTokenRejected(code=err.code) from err
        session = await pb.sessions.live(claims.session_id)
        if movie_id is not None and session.movie_id != movie_id:
            raise PlaybackTokenRejected("Token does not match this film")
    except (GatewayError, SessionRefused) as err:
        pb.counters.token_reject(err.code)
        raise
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


async def master_text(pb: Playback, session: PlaybackSession, sealer: SessionSealer) -> bytearray:
    """The session's tier-filtered master playlist with a token on every URI (UTF-8)."""
    movie = await repository.load_movie(pb.pool, session.movie_id)
    master = await session_master(
        pb, movie, max_height=session.max_height, data_saver=session.data_saver
    )
    return pb.layouts.of(master.template).render(sealer, start_offset=session.start_offset)


async def media_text(
    pb: Playback, session: PlaybackSession, rendition: str, name: str, sealer: SessionSealer
) -> bytearray:
    """The session's media playlist (UTF-8): tokenized, with its ad pods stitched in if
    any."""
    check_rendition(session, rendition)
    entry = await pb.playlists.media(session.movie_id, session.version, rendition, name)
    if not session.ad_plan or entry.parsed.i_frames_only:
        # no ads; or an I-frame (trick-play) playlist, which carries no pods
        return pb.layouts.of(entry.template).render(sealer, start_offset=session.start_offset)
    stitchable = [r for r in session.content_renditions if r.name == rendition]
    if not stitchable:  # e.g. a subtitle playlist: no pods
        return pb.layouts.of(entry.template).render(sealer, start_offset=session.start_offset)
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
        return pb.layouts.of(entry.template).render(sealer, start_offset=session.start_offset)
    offset = session.start_offset
    return pb.layouts.of(stitched.template).render(
        sealer, start_offset=stitched.output_time(offset) if offset is not None else None
    )


# ------------------------------------------------------------------ segment concurrency


@contextmanager
def segment_slot(pb: Playback, session: PlaybackSession) -> Iterator[None]:
    """Hold one of the session's concurrent segment requests for the ``with`` block;
    beyond ``KUSH_SESSION_MAX_CONCURRENT_SEGMENTS`` refuse with 429 and Retry-After: 1.

    A cap on concurrency, not on rate: a player fetching one segment after another never
    meets it, however fast (DESIGN.md). It keeps one session's sockets from holding the
    gateway's memory and origin connections. Counted per gateway process.
    """
    in_flight = pb.segments_in_flight
    count = in_flight.get(session.id, 0)
    if count >= pb.settings.session_max_concurrent_segments:
        raise TooManyRequests(
            "Too many segment requests at once for this playback session",
            code="too_many_segment_requests",
            retry_after=1,
        )
    in_flight[session.id] = count + 1
    try:
        yield
    finally:
        left = in_flight[session.id] - 1
        if left:
            in_flight[session.id] = left
        else:
            del in_flight[session.id]


# ------------------------------------------------------------------ segment bookkeeping


@functools.lru_cache(maxsize=8192)
def client_network(client_ip: str | None) -> str | None:
    """The network a client address belongs to (/24 for IPv4, /48 for IPv6); memoised:
    ``ipaddress`` parsing cost 3 % of a segment request, and a viewer's address repeats."""
    if not client_ip:
        return None
    try:
        return ip_prefix_of(client_ip)
    except ValueError:
        return None


async def heartbeat(pb: Playback, session: PlaybackSession, client_ip: str | None) -> None:
    """The stream is playing from this client: counted against the plan's limit and the
    session's networks (raises ``stream_limit`` / ``session_shared`` refusals)."""
    if await pb.sessions.heartbeat(session, client_network(client_ip)):
        await _seen_playing(pb, session.id)


async def record_content_fetch(
    pb: Playback, session: PlaybackSession, rendition: str, path: str, client_ip: str | None
) -> None:
    """Everything a content segment fetch means besides its bytes: the stream's
    heartbeat, confirming ad pods the viewer played past, and the viewer's position
    (queued at most once per ``PROGRESS_WRITE_EVERY_S`` per session; never waits on
    PostgreSQL)."""
    await heartbeat(pb, session, client_ip)
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
        try:
            await confirm_after_content(
                pb.redis,
                pb.keys,
                pb.confirmed,
                session_id=session.id,
                ad_plan=session.ad_plan,
                content_time=start,
            )
        except RedisError as exc:
            log.warning("ad confirmation skipped: Redis unavailable (%s)", type(exc).__name__)
    if not due:
        return
    if len(marks) > PROGRESS_MARKS_MAX:
        marks.clear()
    marks[session.id] = now
    pb.progress.offer(progress_mark(session, start, entry.duration))


def progress_mark(
    session: PlaybackSession, position: float, duration: float | None
) -> ProgressMark:
    return ProgressMark(
        user_id=session.user_id,
        movie_id=session.movie_id,
        position=position,
        duration=duration,
        at=time.time(),
    )


async def write_progress(pool: asyncpg.Pool, marks: Sequence[ProgressMark]) -> None:
    """The background writer's step: one statement for a batch of positions."""
    await repository.write_progress_batch(
        pool,
        [
            (
                m.user_id,
                m.movie_id,
                m.position,
                m.duration,
                m.duration is not None and m.position >= m.duration - RESUME_END_MARGIN_S,
                datetime.fromtimestamp(m.at, tz=UTC),
            )
            for m in marks
        ],
    )


async def record_ad_fetch(
    pb: Playback,
    session: PlaybackSession,
    ad_id: str,
    rendition: str,
    path: str,
    client_ip: str | None,
) -> None:
    """An ad segment fetch: the stream's heartbeat and the ad's delivery events
    (impression, quartiles, complete; not counted while Redis is down)."""
    await heartbeat(pb, session, client_ip)
    try:
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
    except RedisError as exc:
        log.warning("ad events not recorded: Redis unavailable (%s)", type(exc).__name__)


@contextlib.asynccontextmanager
async def progress_writer(pb: Playback) -> AsyncIterator[None]:
    """Run the background progress writer for as long as the app runs; at shutdown,
    write what is left (bounded in time)."""

    async def write(marks: Sequence[ProgressMark]) -> None:
        await write_progress(pb.pool, marks)

    task = asyncio.create_task(pb.progress.run(write), name="progress-writer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pb.progress.flush(write)


# ------------------------------------------------------------------ data metering


def meter(
    pb: Playback, session: PlaybackSession, nbytes: int | None, *, edge: bool = False
) -> None:
    """Count bytes delivered to a session (a dictionary update; written in batches)."""
    if nbytes:
        key = UsageKey(session.id, session.user_id, session.movie_id, utc_day(time.time()))
        pb.usage.add(key, nbytes, edge=edge)


async def write_usage(pool: asyncpg.Pool, batch: Mapping[UsageKey, Tally]) -> None:
    """The usage writer's step: one statement for everything counted."""
    await repository.add_usage_batch(pool, usage_rows(batch))


async def settle_usage(pb: Playback, user_id: str) -> None:
    """Write this process's counts of one viewer now, so a usage read includes them
    (other processes' counts arrive within ``KUSH_USAGE_FLUSH_S``)."""

    async def write(batch: Mapping[UsageKey, Tally]) -> None:
        await write_usage(pb.pool, batch)

    await pb.usage.settle(write, user_id, timeout_s=PROGRESS_SETTLE_S)


@contextlib.asynccontextmanager
async def usage_writer(pb: Playback) -> AsyncIterator[None]:
    """Run the background usage writer for as long as the app runs; at shutdown, write
    what is left (bounded in time)."""

    async def write(batch: Mapping[UsageKey, Tally]) -> None:
        await write_usage(pb.pool, batch)

    task = asyncio.create_task(
        pb.usage.run(write, interval_s=pb.settings.usage_flush_s), name="usage-writer"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pb.usage.flush(write)
