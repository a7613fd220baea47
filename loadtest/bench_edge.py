"""Edge benchmark: the gateway against nginx serving the same bytes on this machine.

    python -m loadtest.bench_edge [--seconds 8] [--rounds 3] [--connections 16]
                                  [--sessions 1000] [--samples 50]

Measures side by side in one run, with wrk, every pair in alternating rounds:

  1. a tokenized two-hour media playlist (1 200 URIs), no ads: the gateway rotating over
     ``--sessions`` distinct live playback sessions (a wrk Lua script walks the URL list),
     and the same with one session (what a per-process session cache is worth), against
     nginx serving the same bytes as a static file, and an aiohttp app answering the same
     bytes as a constant (the platform's ceiling for any per-request Python work);
  2. the same for free sessions with 12 ad pods stitched in;
  3. the same with ``Accept-Encoding: gzip`` (nginx gzips at the gateway's level);
  4. the gateway against a small aiohttp peer that parses, tokenizes and dumps the
     playlist with the ``m3u8`` library (same URL rotation, one process, uvloop);
  5. a 1 MB segment: gateway (token check, live session, sendfile) vs nginx static;

and with a Python client: 6. ``POST /v1/playback`` -> master -> media -> first segment
byte for a free account with ads (p50, p95). It also times gzip levels 1-9 on a rendered
playlist, which is how the gateway's level was chosen.

Every server gets one worker process (this machine has 2 cores; wrk takes the other).
The bench works in its own PostgreSQL schema and Redis prefix, where it raises the plans'
stream limits so that one account can hold the rotated sessions. Every load loop is
bounded in time and aimed at 127.0.0.1 only. Not a test: never run by ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from gateway.views.hls import PLAYLIST_GZIP_LEVEL, gzip_playlist
from kush.seed import seed_demo_accounts
from runtime import db
from runtime.embedded import EmbeddedServices
from runtime.settings import Settings

SEGMENTS = 1200
SEGMENT_BYTES = 1024 * 1024
PASSWORD = "bench-password-1"
PODS = 12  # a pre-roll and a mid-roll every 10 minutes of a two-hour film
AD_SEGMENTS = 3
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"

WRK_ROTATE_LUA = """
local urls = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do urls[#urls + 1] = line end
end
request = function()
  i = i % #urls + 1
  return wrk.format("GET", urls[i])
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(tool: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if not path:
        sys.exit(f"bench: {tool} is not installed (apt-get install {tool})")
    return path


def _media_playlist(segment_s: float = 6.0, count: int = SEGMENTS) -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{round(segment_s)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for i in range(count):
        lines += [f"#EXTINF:{segment_s:.6f},", f"seg_{i:05d}.ts"]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


MASTER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=854x480,CODECS="avc1.64001e,mp4a.40.2"
480p/index.m3u8
"""


def _write_film(origin: Path, movie_id: str, ad_id: str) -> None:
    base = origin / "videos" / movie_id
    for rendition in ("720p", "480p"):
        (base / rendition).mkdir(parents=True, exist_ok=True)
        (base / rendition / "index.m3u8").write_text(_media_playlist())
    (base / "master.m3u8").write_text(MASTER)
    segment = os.urandom(SEGMENT_BYTES)
    (base / "720p" / "seg_00000.ts").write_bytes(segment)
    (base / "480p" / "seg_00000.ts").write_bytes(segment)
    # a 15-second creative in the same ladder (its segments are never fetched here)
    ad = origin / "ads" / ad_id
    for rendition in ("720p", "480p"):
        (ad / rendition).mkdir(parents=True, exist_ok=True)
        (ad / rendition / "index.m3u8").write_text(_media_playlist(5.0, AD_SEGMENTS))
    (ad / "master.m3u8").write_text(MASTER)


async def _prepare_db(settings: Settings, movie_id: str, ad_id: str) -> None:
    conn = await db.connect(settings)
    try:
        await db.migrate(conn, settings.db_schema)
        await seed_demo_accounts(conn, PASSWORD)
        await conn.execute(
            """INSERT INTO movies (id, slug, title, status, duration_s, published_at)
               VALUES ($1, $2, 'Bench film', 'published', 7200, now())""",
            uuid.UUID(movie_id),
            f"bench-{movie_id[:8]}",
        )
        # one account holds all the rotated sessions: only in this bench's own schema
        await conn.execute("UPDATE plans SET max_streams = 100000")
        await conn.execute(
            """INSERT INTO ads (id, name, status, duration_s, master_key)
               VALUES ($1, 'Bench ad', 'ready', $2, $3)""",
            uuid.UUID(ad_id),
            5.0 * AD_SEGMENTS,
            f"ads/{ad_id}/master.m3u8",
        )
        campaign = await conn.fetchval(
            """INSERT INTO campaigns (name, starts_at, ends_at, target_plans)
               VALUES ('Bench campaign', now() - interval '1 day', now() + interval '1 day',
                       '{free}') RETURNING id"""
        )
        await conn.execute("INSERT INTO campaign_ads VALUES ($1, $2)", campaign, uuid.UUID(ad_id))
        await conn.execute(
            """INSERT INTO break_policies (movie_id, preroll, midroll_every_s, use_cue_points,
                   max_pod_s, max_ads_per_pod) VALUES ($1, true, 600, false, 30, 1)""",
            uuid.UUID(movie_id),
        )
    finally:
        await conn.close()


async def _drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@contextmanager
def _process(
    cmd: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_http(url: str, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"bench: {url} did not answer")


# ------------------------------------------------------------------ wrk


@dataclass(frozen=True)
class Target:
    """One side of a comparison: a base URL and either one path or a rotated list."""

    name: str
    base: str
    paths: tuple[str, ...]
    headers: tuple[str, ...] = ()


@dataclass
class Runs:
    target: Target
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)

    @property
    def median_rps(self) -> float:
        return statistics.median(self.rps)

    @property
    def median_p50(self) -> float:
        return statistics.median(self.p50)


def _wrk(target: Target, seconds: int, connections: int, work: Path) -> tuple[float, float]:
    """Requests per second and p50 latency (ms) from one bounded wrk run."""
    cmd = [_need("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
    cmd.append("--latency")
    for header in target.headers:
        cmd += ["-H", header]
    if len(target.paths) == 1:
        cmd.append(target.base + target.paths[0])
    else:
        script, urls = work / "rotate.lua", work / f"urls-{abs(hash(target.name))}.txt"
        script.write_text(WRK_ROTATE_LUA)
        urls.write_text("\n".join(target.paths) + "\n")
        cmd += ["-s", str(script), target.base, "--", str(urls)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert m is not None
    p50 = float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        sys.exit(f"bench: {bad[1]} error responses from {target.name}")
    errors = re.search(r"Socket errors:.*", out)
    if errors and re.search(r"(read|write|timeout) [1-9]", errors[0]):
        sys.exit(f"bench: {target.name}: {errors[0]}")
    return rps, p50


def _compare(
    title: str, targets: Sequence[Target], args: argparse.Namespace, work: Path
) -> list[Runs]:
    """Alternating rounds over ``targets``; prints every round and the medians."""
    runs = [Runs(t) for t in targets]
    print(title)
    for round_no in range(1, args.rounds + 1):
        cells = []
        for r in runs:
            rps, p50 = _wrk(r.target, args.seconds, args.connections, work)
            r.rps.append(rps)
            r.p50.append(p50)
            cells.append(f"{r.target.name} {rps:9.0f} req/s (p50 {p50:6.2f} ms)")
        print(f"  round {round_no}: " + " | ".join(cells))
    for r in runs:
        print(
            f"  median  {r.target.name:<28} {r.median_rps:9.0f} req/s   p50 {r.median_p50:7.2f} ms"
        )
    return runs


# ------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class Sessions:
    media_paths: tuple[str, ...]  # path?query of each session's 720p media playlist
    body: bytes  # the first session's media playlist, as served
    segment_path: str  # the first session's first segment


async def _login(http: aiohttp.ClientSession, gateway: str, email: str) -> dict[str, str]:
    async with http.post(
        f"{gateway}/v1/auth/login", json={"email": email, "password": PASSWORD}
    ) as r:
        r.raise_for_status()
        return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def _open_sessions(gateway: str, movie_id: str, email: str, count: int) -> Sessions:
    """Start ``count`` playback sessions and return each one's media playlist URL (720p
    when the plan has it)."""
    limit = asyncio.Semaphore(8)
    async with aiohttp.ClientSession() as http:
        auth = await _login(http, gateway, email)

        async def one() -> str:
            async with limit:
                async with http.post(f"{gateway}/v1/playback/{movie_id}", headers=auth) as r:
                    r.raise_for_status()
                    master_url = (await r.json())["manifest_url"]
                async with http.get(master_url) as r:
                    master = await r.text()
            variants = [line for line in master.splitlines() if line and line[0] != "#"]
            variant = next((v for v in variants if v.startswith("720p/")), variants[0])
            return master_url.split("?")[0].rsplit("/", 1)[0] + "/" + variant

        urls = await asyncio.gather(*(one() for _ in range(count)))
        async with http.get(urls[0]) as r:
            body = await r.read()
        seg = next(line for line in body.decode().splitlines() if line.startswith("seg_00000.ts"))
        seg_url = urls[0].split("?")[0].rsplit("/", 1)[0] + "/" + seg
    strip = len(gateway)
    return Sessions(tuple(u[strip:] for u in urls), body, seg_url[strip:])


async def _first_byte_latency(gateway: str, movie_id: str, samples: int) -> list[float]:
    """POST playback -> master -> media -> first byte of the first segment, in ms."""
    timings: list[float] = []
    async with aiohttp.ClientSession() as http:
        auth = await _login(http, gateway, "free@demo.kush")
        for _ in range(samples):
            started = time.perf_counter()
            async with http.post(f"{gateway}/v1/playback/{movie_id}", headers=auth) as r:
                body = await r.json()
            assert body["ads"], "the free account got no ads"
            async with http.get(body["manifest_url"]) as r:
                master = await r.text()
            first = next(line for line in master.splitlines() if line and not line.startswith("#"))
            media_url = body["manifest_url"].rsplit("/", 1)[0] + "/" + first
            async with http.get(media_url) as r:
                media = await r.text()
            seg = next(line for line in media.splitlines() if line and not line.startswith("#"))
            seg_url = (
                gateway + seg
                if seg.startswith("/")
                else media_url.split("?")[0].rsplit("/", 1)[0] + "/" + seg
            )
            async with http.get(seg_url) as r:
                await r.content.readany()
                timings.append((time.perf_counter() - started) * 1000)
            async with http.delete(f"{gateway}/v1/playback/{body['session_id']}", headers=auth):
                pass
    return timings


# ------------------------------------------------------------------ the m3u8 peer


def serve_peer(port: int, playlist: Path, secret_hex: str) -> None:
    """The comparison peer: per request, parse with ``m3u8``, put an HMAC token on every
    segment URI (keyed per session, from ``?s=``), dump. One process, uvloop.

    ``/static.m3u8`` answers the bytes of ``static.m3u8`` beside ``playlist`` with no work
    at all (once written): what aiohttp itself costs for a body of that size."""
    import m3u8
    import uvloop
    from aiohttp import web

    text = playlist.read_text()
    secret = bytes.fromhex(secret_hex)
    static: list[bytes] = []

    async def constant(request: web.Request) -> web.Response:
        if not static:
            static.append((playlist.parent / "static.m3u8").read_bytes())
        return web.Response(body=static[0], content_type=PLAYLIST_TYPE)

    async def handler(request: web.Request) -> web.Response:
        key = hmac.digest(secret, request.query.get("s", "").encode(), "sha256")
        parsed = m3u8.loads(text)
        base = request.path.rsplit("/", 1)[0] + "/"
        for segment in parsed.segments:
            tag = hmac.digest(key, (base + segment.uri).encode(), "sha256")[:15]
            segment.uri = f"{segment.uri}?t={base64.urlsafe_b64encode(tag).decode()}"
        return web.Response(body=parsed.dumps().encode(), content_type=PLAYLIST_TYPE)

    app = web.Application()
    app.router.add_get("/static.m3u8", constant)
    app.router.add_get("/{tail:.*}", handler)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ------------------------------------------------------------------ nginx


def _nginx_conf(root: Path, port: int, work: Path) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    types {{ {PLAYLIST_TYPE} m3u8; video/mp2t ts; }}
    gzip on;
    gzip_comp_level {PLAYLIST_GZIP_LEVEL};
    gzip_types {PLAYLIST_TYPE};
    gzip_min_length 1024;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ add_header Cache-Control "private, no-store"; }}
    }}
}}
""")
    (work / "tmp").mkdir(exist_ok=True)
    return conf


# ------------------------------------------------------------------ report


def _gzip_levels(body: bytes) -> None:
    print(f"gzip levels on the rendered playlist ({len(body)} bytes; gateway uses level ", end="")
    print(f"{PLAYLIST_GZIP_LEVEL})")
    for level in range(1, 10):
        times = []
        for _ in range(30):
            started = time.perf_counter()
            out = gzip_playlist(body, level)
            times.append(time.perf_counter() - started)
        print(
            f"  level {level}: {len(out):7d} bytes ({len(out) / len(body):5.1%})  "
            f"{statistics.median(times) * 1e3:6.3f} ms"
        )
    print()


def _profile(
    pid: int,
    args: argparse.Namespace,
    gateway: str,
    sets: Sequence[Sessions],
    work: Path,
    movie_id: str,
) -> None:
    """py-spy samples the gateway while wrk rotates over each set of sessions, then
    during the start -> first byte loop; prints the functions with the most samples, on
    their own (self) and with callees (total)."""
    spy = os.environ.get("PY_SPY") or _need("py-spy")
    for n in range(len(sets) + 1):
        out = Path(f"{args.profile}.{n}")
        spy_args = ["record", "--pid", str(pid), "--duration", str(args.seconds)]
        spy_args += ["--rate", "500", "--format", "raw", "--output", str(out), "--nonblocking"]
        recorder = subprocess.Popen(
            [spy, *spy_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if n < len(sets):
            target = Target(f"profiled set {n}", gateway, sets[n].media_paths)
            rps, _ = _wrk(target, args.seconds, args.connections, work)
            what = f"{rps:.0f} req/s"
        else:
            timings = asyncio.run(_first_byte_latency(gateway, movie_id, args.samples))
            what = f"start -> first byte p50 {statistics.median(timings):.1f} ms"
        recorder.wait(timeout=60)
        own: dict[str, int] = {}
        total: dict[str, int] = {}
        samples = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1] for f in stack.split(";")]
            samples += int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
            for frame in set(frames):
                total[frame] = total.get(frame, 0) + int(count)
        print(f"set {n}: {what} under py-spy, {samples} samples")
        for title, table in (("self", own), ("total", total)):
            print(f"  by {title}:")
            for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:25]:
                print(f"    {count / samples:6.1%}  {frame}")


def _render_costs() -> None:
    """In-process CPU per playlist, without HTTP: what the gateway adds per request."""
    from gateway.playlists import TokenLayout
    from hls import compile_media_playlist
    from tokens import SegmentKeyring, new_session_id

    root = f"/hls/{uuid.uuid4()}/"
    template = compile_media_playlist(
        _media_playlist(), playlist_path=root + "720p/index.m3u8", root=root
    )
    ring = SegmentKeyring({1: secrets.token_bytes(32)}, 1)
    layout = TokenLayout(template)
    expires = int(time.time()) + 3600
    sealer = ring.session_sealer(new_session_id(), expires)
    signer = ring.session_signer(new_session_id(), expires)

    def median_ms(fn: Callable[[], object], repeats: int = 300) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e3

    layout.render(sealer)
    print(f"CPU per {SEGMENTS}-URI playlist in process (medians, no HTTP):")
    print(
        f"  version 2 tokens into the byte layout (seal + copies) "
        f"{median_ms(lambda: layout.render(sealer)):.3f} ms"
    )
    print(
        f"  of which seal (one AES-ECB call + base64)            "
        f"{median_ms(lambda: sealer.seal(layout.digests(sealer.hasher))):.3f} ms"
    )
    print(
        f"  version 1 per-path MACs + str template + encode       "
        f"{median_ms(lambda: template.render(signer.sign_many(template.paths)).encode(), 100):.3f}"
        " ms"
    )
    print(
        f"  path digests, once per template (version 2)           "
        f"{median_ms(lambda: sealer.hasher.digest_many(template.paths), 30):.3f} ms\n"
    )


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"load average {load}"
    )


def _ratio_line(label: str, value: float, goal: str) -> None:
    print(f"  {label:<58} {value:>9}  goal {goal}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per group")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=1000, help="sessions rotated over")
    parser.add_argument("--samples", type=int, default=50, help="first-byte latency samples")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="instead of the comparisons: sample the gateway with py-spy (on PATH or in "
        "$PY_SPY) under the rotated playlist loads, write the collapsed stacks to FILE and "
        "print where the time goes",
    )
    parser.add_argument("--serve-peer", nargs=3, metavar=("PORT", "PLAYLIST", "SECRET"))
    args = parser.parse_args()
    if args.serve_peer:
        port, playlist, secret = args.serve_peer
        serve_peer(int(port), Path(playlist), secret)
        return
    nginx = _need("nginx")
    _need("wrk")

    embedded = EmbeddedServices()
    work = Path(tempfile.mkdtemp(prefix="kush-bench-"))
    env_db = os.environ.get("DATABASE_URL") or embedded.start_postgres(work / "data")
    env_redis = os.environ.get("REDIS_URL") or embedded.start_redis(work / "data")
    schema = f"kush_bench_{secrets.token_hex(4)}"
    settings = Settings(
        database_url=env_db,
        redis_url=env_redis,
        db_schema=schema,
        master_key=secrets.token_urlsafe(32),
        data_dir=work / "data",
    )
    movie_id, ad_id = str(uuid.uuid4()), str(uuid.uuid4())
    origin = work / "origin"
    _write_film(origin, movie_id, ad_id)
    asyncio.run(_prepare_db(settings, movie_id, ad_id))

    gw_port, ng_port, peer_port = _free_port(), _free_port(), _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": env_db,
        "REDIS_URL": env_redis,
        "KUSH_DB_SCHEMA": schema,
        "KUSH_REDIS_PREFIX": f"kushbench:{schema}:",
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_ORIGIN_DIR": str(origin),
        "KUSH_GATEWAY_PORT": str(gw_port),
        "KUSH_ADMIN_PORT": str(_free_port()),
        "KUSH_LOG_LEVEL": "WARNING",
        "KUSH_LOGIN_LIMIT_PER_MINUTE": "100000",
        "KUSH_PLAYBACK_STARTS_PER_MINUTE": "100000",
        "KUSH_DATA_DIR": str(work / "data"),
    }
    gateway = f"http://127.0.0.1:{gw_port}"
    ng = f"http://127.0.0.1:{ng_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    static = work / "static"
    static.mkdir()
    origin_playlist = origin / "videos" / movie_id / "720p" / "index.m3u8"
    peer_cmd = [sys.executable, "-m", "loadtest.bench_edge", "--serve-peer", str(peer_port)]
    peer_cmd += [str(origin_playlist), secrets.token_hex(32)]
    try:
        gateway_cmd = [sys.executable, "-m", "kush", "gateway", "--workers", "1"]
        with (
            _process(gateway_cmd, env) as gateway_proc,
            _process([nginx, "-c", str(_nginx_conf(static, ng_port, work)), "-p", str(work)]),
            _process(peer_cmd, env),
        ):
            _wait_http(f"{gateway}/healthz")
            started = time.perf_counter()
            plain = asyncio.run(
                _open_sessions(gateway, movie_id, "premium@demo.kush", args.sessions)
            )
            ads = asyncio.run(_open_sessions(gateway, movie_id, "free@demo.kush", args.sessions))
            opened = time.perf_counter() - started
            assert b"com.kushfilms.ad" in ads.body, "the free sessions got no ads"
            pods = ads.body.count(b'CLASS="com.kushfilms.ad"')
            (static / "playlist.m3u8").write_bytes(plain.body)
            (origin_playlist.parent / "static.m3u8").write_bytes(plain.body)
            (static / "ads.m3u8").write_bytes(ads.body)
            shutil.copy(origin / "videos" / movie_id / "720p" / "seg_00000.ts", static / "seg.ts")
            _wait_http(f"{ng}/playlist.m3u8")
            _wait_http(f"{peer}/hls/x/720p/index.m3u8?s=warm")
            peer_paths = tuple(
                f"/hls/{movie_id}/720p/index.m3u8?s={p.rsplit('t=', 1)[1][8:24]}"
                for p in plain.media_paths
            )
            gz = ("Accept-Encoding: gzip",)
            if args.profile:
                _profile(gateway_proc.pid, args, gateway, (plain, ads), work, movie_id)
                return
            print(f"kush edge benchmark: {_machine()}")
            print(
                f"wrk 1 thread, {args.connections} connections, {args.seconds} s per run, "
                f"{args.rounds} alternating rounds per group; one worker process per server"
            )
            print(
                f"{len(plain.media_paths)} + {len(ads.media_paths)} playback sessions opened in "
                f"{opened:.1f} s; rotated URL lists walked round-robin by a wrk Lua script\n"
            )
            _render_costs()
            _gzip_levels(plain.body)
            rot = f"gateway {len(plain.media_paths)} sessions"
            playlist = _compare(
                f"1. tokenized media playlist, {SEGMENTS} URIs, no ads ({len(plain.body)} bytes)",
                [
                    Target(rot, gateway, plain.media_paths),
                    Target("gateway 1 session", gateway, plain.media_paths[:1]),
                    Target("nginx same bytes", ng, ("/playlist.m3u8",)),
                    Target("aiohttp static same bytes", peer, ("/static.m3u8",)),
                ],
                args,
                work,
            )
            with_ads = _compare(
                f"2. free sessions, {pods} ad pods stitched ({len(ads.body)} bytes)",
                [
                    Target(f"gateway {len(ads.media_paths)} sessions", gateway, ads.media_paths),
                    Target("nginx same bytes", ng, ("/ads.m3u8",)),
                ],
                args,
                work,
            )
            gzipped = _compare(
                f"3. as 1 with Accept-Encoding: gzip (level {PLAYLIST_GZIP_LEVEL} on both)",
                [
                    Target(rot, gateway, plain.media_paths, gz),
                    Target("nginx same bytes, gzip", ng, ("/playlist.m3u8",), gz),
                ],
                args,
                work,
            )
            peers = _compare(
                "4. vs a peer that parses, tokenizes and dumps with the m3u8 library",
                [
                    Target(rot, gateway, plain.media_paths),
                    Target(f"m3u8 peer {len(peer_paths)} sessions", peer, peer_paths),
                ],
                args,
                work,
            )
            segment = _compare(
                f"5. {SEGMENT_BYTES // 1024} KiB segment: token, live session, bytes",
                [
                    Target("gateway", gateway, (plain.segment_path,)),
                    Target("nginx static", ng, ("/seg.ts",)),
                ],
                args,
                work,
            )
            timings = asyncio.run(_first_byte_latency(gateway, movie_id, args.samples))
            q = statistics.quantiles(timings, n=20)
            print(
                f"6. POST /v1/playback -> master -> media -> first segment byte, free plan "
                f"with ads ({len(timings)} runs)\n  p50 {statistics.median(timings):.1f} ms"
                f"   p95 {q[18]:.1f} ms\n"
            )
            print("summary (medians)")
            _ratio_line(
                "1. playlist, no ads, vs nginx",
                f"{playlist[0].median_rps / playlist[2].median_rps:.1%}",
                ">= 15 %",
            )
            _ratio_line(
                "   the same, one session (session cache warm)",
                f"{playlist[1].median_rps / playlist[2].median_rps:.1%}",
                "(reported)",
            )
            _ratio_line(
                "   aiohttp serving the same bytes as a constant (the ceiling)",
                f"{playlist[3].median_rps / playlist[2].median_rps:.1%}",
                "(reported)",
            )
            _ratio_line(
                f"2. playlist, {pods} ad pods, vs nginx",
                f"{with_ads[0].median_rps / with_ads[1].median_rps:.1%}",
                ">= 10 %",
            )
            _ratio_line(
                f"3. playlist, gzip level {PLAYLIST_GZIP_LEVEL}, vs nginx gzip",
                f"{gzipped[0].median_rps / gzipped[1].median_rps:.1%}",
                "(reported)",
            )
            _ratio_line(
                "4. playlist vs the m3u8 peer",
                f"{peers[0].median_rps / peers[1].median_rps:.1f}x",
                ">= 40x",
            )
            _ratio_line(
                "5. 1 MB segment vs nginx",
                f"{segment[0].median_rps / segment[1].median_rps:.1%}",
                ">= 60 %",
            )
            _ratio_line(
                "6. start -> first segment byte p50",
                f"{statistics.median(timings):.1f} ms",
                "<= 15 ms",
            )
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"\nload average at the end: {load} (figures need a quiet machine)")
    finally:
        asyncio.run(_drop_schema(env_db, schema))
        embedded.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
