"""Locust scenarios for the Kush Films gateway (run by ``kush loadtest``).

    kush loadtest --users 50 --spawn-rate 10 --run-time 60s --report var/loadtest

``Viewer``: signs in with one load-test account of its own, starts playback, fetches the
master, picks a rendition by a simulated bandwidth (mostly 360p/480p, as on Ugandan
mobile networks), fetches the media playlist, then the segments at playback pace after a
short start-up buffer; now and then it seeks, switches rendition or stops early.
``Browser``: the catalogue, search, trending, categories, a film's page and poster.
``Admin``: light reads of the admin API (creatives, campaigns, the ad report).

Besides Locust's per-request statistics (segment requests are named
``/hls/[movie]/[rendition]/[segment]``, ad segments ``/hls/ads/[ad]/[rendition]/[segment]``)
two custom rows: ``KUSH time to first segment`` (playback start to the first segment's
bytes, in ms) and ``KUSH ad segment`` (one per ad segment served, with its latency).

Locust options added here: ``--kush-accounts N`` (the pool: ``load-000000@loadtest.kush``
...), ``--kush-password`` (or ``LOCUST_KUSH_PASSWORD``), ``--kush-pace`` (1 = real time),
``--kush-movie ID`` (repeatable: only these films), ``--kush-admin-host``,
``--kush-admin-email`` and ``--kush-admin-password`` (or ``LOCUST_KUSH_ADMIN_PASSWORD``).
"""

from __future__ import annotations

import itertools
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser

# heights a simulated connection can hold, weighted like Uganda's mobile audience
BANDWIDTH_TARGETS = (240, 360, 480, 720, 1080)
BANDWIDTH_WEIGHTS = (8, 45, 32, 12, 3)
BUFFER_SEGMENTS = 3  # fetched back to back at start, like a player filling its buffer
SEEK_P, SWITCH_P, STOP_P = 0.01, 0.03, 0.01  # per segment
SEARCH_TERMS = ("demo", "film", "kush", "test", "kampala", "love", "football", "news")
_accounts = itertools.count()
_RESOLUTION = re.compile(r"RESOLUTION=\d+x(\d+)")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--kush-accounts", type=int, default=100, help="load-test accounts")
    parser.add_argument(
        "--kush-password",
        default="",
        env_var="LOCUST_KUSH_PASSWORD",
        help="their password",
        is_secret=True,
    )
    parser.add_argument("--kush-pace", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--kush-movie", action="append", default=[], help="only these films")
    parser.add_argument("--kush-admin-host", default="", help="the admin service's URL")
    parser.add_argument("--kush-admin-email", default="admin@demo.kush")
    parser.add_argument(
        "--kush-admin-password",
        default="",
        env_var="LOCUST_KUSH_ADMIN_PASSWORD",
        is_secret=True,
    )


def _metric(user: FastHttpUser, name: str, ms: float, length: int = 0) -> None:
    """A custom statistics row (request type ``KUSH``)."""
    user.environment.events.request.fire(
        request_type="KUSH",
        name=name,
        response_time=ms,
        response_length=length,
        exception=None,
        context={},
    )


def _error_code(resp: Any) -> str:
    """The JSON error's code (stable, so failures group in the report), else the text."""
    try:
        return str(resp.json()["error"]["code"])
    except Exception:
        return (resp.text or "")[:80]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class Variant:
    height: int
    url: str


@dataclass(frozen=True, slots=True)
class Segment:
    url: str
    duration: float
    ad: bool


def _join(base: str, uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return uri
    origin = re.match(r"^https?://[^/]+", base)
    if uri.startswith("/"):
        return (origin[0] if origin else "") + uri
    return base.split("?", 1)[0].rsplit("/", 1)[0] + "/" + uri


def parse_master(url: str, text: str) -> list[Variant]:
    out, height = [], 0
    for line in _lines(text):
        if line.startswith("#EXT-X-STREAM-INF"):
            m = _RESOLUTION.search(line)
            height = int(m[1]) if m else 0
        elif not line.startswith("#") and height:
            out.append(Variant(height, _join(url, line)))
            height = 0
    return sorted(out, key=lambda v: v.height)


def parse_media(url: str, text: str) -> list[Segment]:
    out, duration = [], 0.0
    for line in _lines(text):
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0] or 0)
        elif not line.startswith("#"):
            out.append(Segment(_join(url, line), duration, "/hls/ads/" in line))
    return out


def pick_variant(variants: list[Variant]) -> Variant:
    """The best rendition a simulated connection holds (the lowest if none fits)."""
    target = random.choices(BANDWIDTH_TARGETS, BANDWIDTH_WEIGHTS)[0]
    fitting = [v for v in variants if v.height <= target]
    return fitting[-1] if fitting else variants[0]


def _segment_name(url: str) -> str:
    return (
        "/hls/ads/[ad]/[rendition]/[segment]"
        if "/hls/ads/" in url
        else ("/hls/[movie]/[rendition]/[segment]")
    )


class Viewer(FastHttpUser):
    """One viewer watching films, one account of the pool each."""

    weight = 20
    wait_time = between(1, 5)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.pace = max(0.01, float(opts.kush_pace))
        index = next(_accounts) % max(1, int(opts.kush_accounts))
        email = f"load-{index:06d}@loadtest.kush"
        with self.client.post(
            "/v1/auth/login",
            json={"email": email, "password": opts.kush_password},
            name="/v1/auth/login",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"login: {resp.status_code} {_error_code(resp)}")
                raise StopUser()
            self.auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        self.movies: list[str] = list(opts.kush_movie)
        if not self.movies:
            resp = self.client.get("/v1/movies?limit=50", name="/v1/movies")
            self.movies = [m["id"] for m in resp.json().get("items", [])] if resp.ok else []
        self.session_id: str | None = None

    def on_stop(self) -> None:
        self._end()

    def _end(self) -> None:
        if self.session_id is None:
            return
        sid, self.session_id = self.session_id, None
        self.client.delete(f"/v1/playback/{sid}", headers=self.auth, name="/v1/playback/[session]")

    @task
    def watch(self) -> None:
        if not self.movies:
            raise StopUser()
        started = time.perf_counter()
        with self.client.post(
            f"/v1/playback/{random.choice(self.movies)}",
            headers=self.auth,
            name="/v1/playback/[movie]",
            catch_response=True,
        ) as resp:
            if resp.status_code != 201:
                resp.failure(f"playback start: {resp.status_code} {_error_code(resp)}")
                return
            body = resp.json()
        self.session_id = body["session_id"]
        try:
            self._play(body["manifest_url"], started)
        finally:
            self._end()

    def _play(self, manifest_url: str, started: float) -> None:
        resp = self.client.get(manifest_url, name="/hls/[movie]/master.m3u8")
        if not resp.ok:
            return
        variants = parse_master(manifest_url, resp.text or "")
        if not variants:
            return
        variant = pick_variant(variants)
        segments = self._media(variant)
        index, first = 0, True
        while index < len(segments):
            segment = segments[index]
            before = time.perf_counter()
            resp = self.client.get(segment.url, name=_segment_name(segment.url))
            if not resp.ok:
                return
            elapsed = time.perf_counter() - before
            if first:
                _metric(self, "time to first segment", (time.perf_counter() - started) * 1000)
                first = False
            if segment.ad:
                _metric(self, "ad segment", elapsed * 1000, len(resp.content or b""))
            index += 1
            roll = random.random()
            if roll < STOP_P:
                return
            if roll < STOP_P + SEEK_P:
                index = random.randrange(index, len(segments)) if index < len(segments) else index
            elif roll < STOP_P + SEEK_P + SWITCH_P and len(variants) > 1:
                variant = random.choice([v for v in variants if v != variant])
                segments = self._media(variant) or segments
            if index > BUFFER_SEGMENTS:
                # keep the buffer full: the next segment when one segment's time has played
                gevent.sleep(max(0.0, segment.duration / self.pace - elapsed))

    def _media(self, variant: Variant) -> list[Segment]:
        resp = self.client.get(variant.url, name="/hls/[movie]/[rendition]/index.m3u8")
        return parse_media(variant.url, resp.text or "") if resp.ok else []


class Browser(FastHttpUser):
    """Someone browsing the catalogue without playing."""

    weight = 4
    wait_time = between(2, 8)

    def on_start(self) -> None:
        self.movies: list[str] = list(self.environment.parsed_options.kush_movie)

    def _known(self) -> list[str]:
        if not self.movies:
            resp = self.client.get("/v1/movies?limit=20", name="/v1/movies")
            if resp.ok:
                self.movies = [m["id"] for m in resp.json().get("items", [])]
        return self.movies

    @task(5)
    def catalogue(self) -> None:
        resp = self.client.get("/v1/movies?limit=20", name="/v1/movies")
        cursor = resp.json().get("next_cursor") if resp.ok else None
        if cursor and random.random() < 0.3:
            self.client.get(f"/v1/movies?limit=20&cursor={cursor}", name="/v1/movies?cursor=")

    @task(3)
    def search(self) -> None:
        term = random.choice(SEARCH_TERMS)
        self.client.get(f"/v1/movies?q={term}&limit=20", name="/v1/movies?q=[term]")

    @task(2)
    def trending(self) -> None:
        window = random.choice(("24h", "7d"))
        self.client.get(f"/v1/movies/trending?window={window}", name="/v1/movies/trending")

    @task(1)
    def categories(self) -> None:
        self.client.get("/v1/categories", name="/v1/categories")

    @task(2)
    def film_page(self) -> None:
        movies = self._known()
        if movies:
            movie = random.choice(movies)
            self.client.get(f"/v1/movies/{movie}", name="/v1/movies/[movie]")
            self.client.get(f"/posters/{movie}.jpg", name="/posters/[movie].jpg")


class Admin(FastHttpUser):
    """An operator glancing at the ad inventory and the report (reads only)."""

    fixed_count = 1
    wait_time = between(5, 15)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        if not opts.kush_admin_host:
            raise StopUser()
        self.admin = opts.kush_admin_host.rstrip("/")
        with self.client.post(
            "/v1/auth/login",
            json={"email": opts.kush_admin_email, "password": opts.kush_admin_password},
            name="/v1/auth/login (admin)",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"admin login: {resp.status_code} {_error_code(resp)}")
                raise StopUser()
            self.auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    @task(3)
    def campaigns(self) -> None:
        self.client.get(
            f"{self.admin}/admin/v1/campaigns", headers=self.auth, name="admin: campaigns"
        )

    @task(2)
    def ads(self) -> None:
        self.client.get(f"{self.admin}/admin/v1/ads", headers=self.auth, name="admin: ads")

    @task(1)
    def report(self) -> None:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        self.client.get(
            f"{self.admin}/admin/v1/reports/ads?from={today}&to={today}",
            headers=self.auth,
            name="admin: ad report",
        )
