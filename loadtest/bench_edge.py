"""Edge benchmark: the gateway against nginx serving the same bytes on this machine.

    python -m loadtest.bench_edge [--seconds 8] [--rounds 3] [--connections 16]

Measures, with wrk, side by side in one run:
  1. a tokenized two-hour media playlist (1 200 segments): gateway (templates + token
     MACs per request) vs nginx serving the same pre-tokenized file;
  2. a 1 MB segment: gateway (token check, session check, sendfile) vs nginx static;
and with a Python client: 3. POST /v1/playback -> master -> media -> first segment byte.

Both servers get one worker process (this machine has 2 cores; wrk takes the other).
Every load loop is bounded in time and aimed at 127.0.0.1 only. Prints medians of the
rounds and the gateway/nginx ratios. Not a test: never run by `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import asyncpg

from kush.seed import seed_demo_accounts
from runtime import db
from runtime.embedded import EmbeddedServices
from runtime.settings import Settings

SEGMENTS = 1200
SEGMENT_BYTES = 1024 * 1024
PASSWORD = "bench-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(tool: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if not path:
        sys.exit(f"bench: {tool} is not installed (apt-get install {tool})")
    return path


def _media_playlist() -> str:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:6",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for i in range(SEGMENTS):
        lines += ["#EXTINF:6.000000,", f"seg_{i:05d}.ts"]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


MASTER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=854x480,CODECS="avc1.64001e,mp4a.40.2"
480p/index.m3u8
"""


def _write_film(origin: Path, movie_id: str) -> None:
    base = origin / "videos" / movie_id
    for rendition in ("720p", "480p"):
        (base / rendition).mkdir(parents=True, exist_ok=True)
        (base / rendition / "index.m3u8").write_text(_media_playlist())
    (base / "master.m3u8").write_text(MASTER)
    (base / "720p" / "seg_00000.ts").write_bytes(os.urandom(SEGMENT_BYTES))


async def _prepare_db(settings: Settings, movie_id: str) -> None:
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


def _wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """Requests per second and p50 latency (ms) from one bounded wrk run."""
    out = subprocess.run(
        [_need("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert m is not None
    p50 = float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        sys.exit(f"bench: {non2xx[1]} error responses from {url.split('?')[0]}")
    return rps, p50


async def _session_urls(gateway: str, movie_id: str) -> tuple[str, str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway}/v1/auth/login", json={"email": "premium@demo.kush", "password": PASSWORD}
        ) as r:
            token = (await r.json())["access_token"]
        async with http.post(
            f"{gateway}/v1/playback/{movie_id}", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            body = await r.json()
        master_url = body["manifest_url"]
        async with http.get(master_url) as r:
            master = await r.text()
        variant = next(line for line in master.splitlines() if line.startswith("720p/"))
        media_url = master_url.rsplit("/", 1)[0] + "/" + variant
        async with http.get(media_url) as r:
            media = await r.text()
        seg = next(line for line in media.splitlines() if line.startswith("seg_00000.ts"))
        seg_url = media_url.split("?")[0].rsplit("/", 1)[0] + "/" + seg
        return media_url, seg_url, media


async def _first_byte_latency(gateway: str, movie_id: str, samples: int) -> list[float]:
    """POST playback -> master -> media -> first byte of the first segment, in ms."""
    timings: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway}/v1/auth/login", json={"email": "basic@demo.kush", "password": PASSWORD}
        ) as r:
            auth = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
        for _ in range(samples):
            started = time.perf_counter()
            async with http.post(f"{gateway}/v1/playback/{movie_id}", headers=auth) as r:
                body = await r.json()
            async with http.get(body["manifest_url"]) as r:
                master = await r.text()
            first = next(line for line in master.splitlines() if line and not line.startswith("#"))
            media_url = body["manifest_url"].rsplit("/", 1)[0] + "/" + first
            async with http.get(media_url) as r:
                media = await r.text()
            seg = next(line for line in media.splitlines() if line.startswith("seg_"))
            seg_url = media_url.split("?")[0].rsplit("/", 1)[0] + "/" + seg
            async with http.get(seg_url) as r:
                await r.content.readany()
                timings.append((time.perf_counter() - started) * 1000)
            async with http.delete(f"{gateway}/v1/playback/{body['session_id']}", headers=auth):
                pass
    return timings


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
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ add_header Cache-Control "private, no-store"; }}
    }}
}}
""")
    (work / "tmp").mkdir(exist_ok=True)
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pair")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--samples", type=int, default=50, help="first-byte latency samples")
    args = parser.parse_args()
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
    movie_id = str(uuid.uuid4())
    origin = work / "origin"
    _write_film(origin, movie_id)
    asyncio.run(_prepare_db(settings, movie_id))

    gw_port, ng_port = _free_port(), _free_port()
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
        "KUSH_DATA_DIR": str(work / "data"),
    }
    gateway = f"http://127.0.0.1:{gw_port}"
    static = work / "static"
    static.mkdir()
    try:
        with (
            _process([sys.executable, "-m", "kush", "gateway", "--workers", "1"], env),
            _process([nginx, "-c", str(_nginx_conf(static, ng_port, work)), "-p", str(work)]),
        ):
            _wait_http(f"{gateway}/healthz")
            media_url, seg_url, media_text = asyncio.run(_session_urls(gateway, movie_id))
            (static / "playlist.m3u8").write_text(media_text)
            shutil.copy(origin / "videos" / movie_id / "720p" / "seg_00000.ts", static / "seg.ts")
            _wait_http(f"http://127.0.0.1:{ng_port}/playlist.m3u8")
            print(
                f"kush edge benchmark: {os.cpu_count()} cores, wrk -t1 -c{args.connections} "
                f"-d{args.seconds}s, {args.rounds} alternating rounds, medians\n"
            )
            pairs = [
                (
                    f"tokenized media playlist (1200 segments, {len(media_text) // 1024} KiB)",
                    media_url,
                    f"http://127.0.0.1:{ng_port}/playlist.m3u8",
                ),
                ("1 MB segment with token check", seg_url, f"http://127.0.0.1:{ng_port}/seg.ts"),
            ]
            for label, gw_url, ng_url in pairs:
                gw_runs, ng_runs = [], []
                for _ in range(args.rounds):
                    gw_runs.append(_wrk(gw_url, args.seconds, args.connections))
                    ng_runs.append(_wrk(ng_url, args.seconds, args.connections))
                gw_rps = statistics.median(r for r, _ in gw_runs)
                ng_rps = statistics.median(r for r, _ in ng_runs)
                gw_p50 = statistics.median(p for _, p in gw_runs)
                ng_p50 = statistics.median(p for _, p in ng_runs)
                print(f"{label}")
                print(f"  gateway  {gw_rps:10.0f} req/s   p50 {gw_p50:7.2f} ms")
                print(f"  nginx    {ng_rps:10.0f} req/s   p50 {ng_p50:7.2f} ms")
                print(f"  ratio    {gw_rps / ng_rps:10.1%} of nginx\n")
            timings = asyncio.run(_first_byte_latency(gateway, movie_id, args.samples))
            q = statistics.quantiles(timings, n=20)
            print(f"POST playback -> master -> media -> first segment byte ({len(timings)} runs)")
            print(f"  p50 {statistics.median(timings):.1f} ms   p95 {q[18]:.1f} ms")
    finally:
        asyncio.run(_drop_schema(env_db, schema))
        embedded.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
