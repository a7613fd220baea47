"""Edge cache benchmark: a 1 MB segment through the nginx edge against nginx serving the
file itself, and the cache-miss path edge -> gateway -> origin.

    python -m loadtest.bench_cache [--seconds 8] [--rounds 3] [--connections 16]

The real edge (``nginx/`` rendered by ``kush edge``'s code) in front of one real gateway
worker (``kush gateway --workers 1``) with a local origin; wrk on loopback, one thread,
every run bounded in time. Each round runs, in this order:

  1. nginx direct: a plain nginx (the edge's worker count, sendfile) serves the 1 MB file;
  2. edge HIT, one URL: one viewer's token for one cached segment, so after the first
     request the edge reuses its 2 s auth answer (the best case of the micro-cache);
  3. edge HIT, rotating: the tokens of ``--viewers`` sessions (one login each) for
     ``--cached`` cached segments, cycled by a wrk Lua script: each URL comes back only
     after ``viewers x cached`` others (several seconds), so nearly every request is a
     real ``auth_request`` to the gateway (token MAC, session read, bookkeeping) before
     the cached bytes are sent;
  4. edge MISS: distinct objects, each requested once (the origin's segment files are
     hard links of one 1 MB file under different names, so every name is its own cache
     key): auth_request, then proxy to the gateway, which reads the origin file; nginx
     stores the copy. Every round gets names no earlier request used; tokens rotate
     over the sessions (a session may have 8 segment requests in flight at the gateway).

Prints the machine, the load generator's settings, every round, the medians and the
ratios to nginx direct; and the CPU time each request cost nginx and the gateway (read
from /proc around each run), which a busy shared machine does not inflate as it does
the request rates: nginx direct's CPU per request over the edge's (nginx + gateway) is
the throughput ratio once the servers, not the machine's other tenants, are the limit.
The gateway's figure includes its idle background work spread over the run's requests
(see it on the nginx direct line, where the gateway serves nothing). Not a test: never
run by ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp
import orjson
from yarl import URL

from kush import edge
from kush.loadtest import create_accounts, email_of
from loadtest.bench_edge import (
    MASTER,
    PASSWORD,
    SEGMENT_BYTES,
    _drop_schema,
    _free_port,
    _free_udp_port,
    _need,
    _prepare_db,
    _process,
    _wait_http,
)
from runtime import db
from runtime.embedded import EmbeddedServices
from runtime.settings import Settings

LUA = Path(__file__).resolve().parent / "wrk_urls.lua"
HIT_RENDITION = "720p"
MISS_RENDITION = "480p"
WARM_S = 10
WRK_TIMEOUT_S = 10
RUNS = ("nginx direct", "edge HIT, one URL", "edge HIT, rotating", "edge MISS")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run, from the JSON line ``wrk_urls.lua`` prints."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    hit: int
    miss: int
    other: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        cache = (
            f"  (HIT {self.hit} MISS {self.miss}" + (f" other {self.other})" if self.other else ")")
            if self.hit or self.miss
            else ""
        )
        if self.socket_errors:
            cache += f"  {self.socket_errors} socket errors/timeouts"
        return (
            f"{self.rps:8.0f} req/s  {self.rps * SEGMENT_BYTES * 8 / 1e9:5.1f} Gb/s  "
            f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms{cache}"
        )


def wrk(base: str, paths: Path, *, once: bool, seconds: int, connections: int) -> WrkResult:
    """One bounded wrk run over the paths in ``paths`` (cycled, or each once)."""
    cmd = [_need("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s"]
    cmd += ["-s", str(LUA), base]
    cmd += ["--", str(paths), "once" if once else "loop"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    line = next((s for s in out.splitlines() if s.startswith("KUSH_WRK ")), None)
    if line is None:
        sys.exit(f"bench: wrk printed no result:\n{out}")
    r = orjson.loads(line.removeprefix("KUSH_WRK "))
    if r["non2xx"]:
        sys.exit(f"bench: {r['non2xx']} error answers from {base}: {out}")
    return WrkResult(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        hit=r["hit"],
        miss=r["miss"],
        other=r["other"],
        socket_errors=r["socket_errors"],
    )


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and every live descendant,
    from /proc (nginx's workers, the gateway's worker process)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [child for child, ppid in parent.items() if ppid == pid and child not in tree]
    return sum(cpu.get(pid, 0.0) for pid in tree)


@dataclass(frozen=True, slots=True)
class Servers:
    """The process ids whose CPU time each run reads."""

    gateway: int
    edge: int
    direct: int


def measured(
    servers: Servers, on_edge: bool, run: Callable[[], WrkResult]
) -> tuple[WrkResult, float, float]:
    """One run, and the CPU milliseconds per request it cost nginx and the gateway."""
    nginx_pid = servers.edge if on_edge else servers.direct
    before = tree_cpu_s(nginx_pid), tree_cpu_s(servers.gateway)
    result = run()
    after = tree_cpu_s(nginx_pid), tree_cpu_s(servers.gateway)
    per = 1000 / max(1, result.requests)
    return result, (after[0] - before[0]) * per, (after[1] - before[1]) * per


def _media_playlist(segments: int) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:6", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(segments):
        lines += ["#EXTINF:6.000000,", f"seg_{i:05d}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n"


def write_film(origin: Path, movie_id: str, *, cached: int, missed: int) -> Path:
    """The film at the origin: ``cached`` segments of 720p and ``missed`` of 480p, every
    one a hard link of one random 1 MB file (distinct names, distinct cache keys, no
    extra disk). Returns that file."""
    base = origin / "videos" / movie_id
    (base / "master.m3u8").parent.mkdir(parents=True)
    (base / "master.m3u8").write_text(MASTER)
    source = origin / "segment.ts"
    source.write_bytes(os.urandom(SEGMENT_BYTES))
    for rendition, count in ((HIT_RENDITION, cached), (MISS_RENDITION, missed)):
        (base / rendition).mkdir()
        (base / rendition / "index.m3u8").write_text(_media_playlist(count))
        for i in range(count):
            os.link(source, base / rendition / f"seg_{i:05d}.ts")
    return source


async def make_viewers(settings: Settings, count: int) -> None:
    """``count`` load-test accounts, all premium (one session each, any rendition)."""
    conn = await db.connect(settings)
    try:
        await create_accounts(conn, count, PASSWORD)
        await conn.execute(
            """INSERT INTO subscriptions (user_id, plan_id, status, provider)
               SELECT id, 'premium', 'active', 'loadtest' FROM users WHERE email LIKE 'load-%'
               ON CONFLICT (user_id, provider) DO UPDATE SET plan_id = 'premium'"""
        )
    finally:
        await conn.close()


async def _segment_paths(http: aiohttp.ClientSession, manifest: URL, rendition: str) -> list[str]:
    """The tokenized segment paths (path and query) of one rendition of a session."""
    async with http.get(manifest) as r:
        r.raise_for_status()
        master = await r.text()
    variant = next(line for line in master.splitlines() if line.startswith(f"{rendition}/"))
    media_url = manifest.join(URL(variant))
    async with http.get(media_url) as r:
        r.raise_for_status()
        media = await r.text()
    return [
        str(media_url.join(URL(line)).relative())
        for line in media.splitlines()
        if line.startswith("seg_")
    ]


async def sessions(gateway: str, movie_id: str, viewers: int) -> list[dict[str, list[str]]]:
    """Per viewer (login, playback start on the gateway): its segment paths per rendition."""
    out: list[dict[str, list[str]]] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for i in range(viewers):
            login = {"email": email_of(i), "password": PASSWORD}
            async with http.post(f"{gateway}/v1/auth/login", json=login) as r:
                r.raise_for_status()
                auth = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
            async with http.post(f"{gateway}/v1/playback/{movie_id}", headers=auth) as r:
                r.raise_for_status()
                manifest = URL((await r.json())["manifest_url"])
            out.append(
                {
                    rendition: await _segment_paths(http, manifest, rendition)
                    for rendition in (HIT_RENDITION, MISS_RENDITION)
                }
            )
    return out


def _direct_conf(root: Path, port: int, work: Path) -> Path:
    """A plain nginx serving ``root`` with the edge's worker count and send path."""
    conf = work / "direct.conf"
    tmp = work / "direct-tmp"
    tmp.mkdir()
    temps = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""worker_processes auto;
daemon off;
pid {work}/direct.pid;
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000;
{temps}
    types {{ video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {root};
    }}
}}
"""
    )
    return conf


def _write_paths(path: Path, paths: list[str]) -> Path:
    path.write_text("\n".join(paths) + "\n")
    return path


def _machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    nginx_v = subprocess.run(
        [_need("nginx"), "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    wrk_v = subprocess.run(
        [_need("wrk"), "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    return (
        f"machine: {os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, {nginx_v.removeprefix('nginx version: ')}, "
        f"{wrk_v.split(' [')[0]}"
    )


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="length of each timed wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (>= 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--viewers", type=int, default=50, help="sessions for rotating tokens")
    parser.add_argument("--cached", type=int, default=120, help="cached segments rotated over")
    parser.add_argument(
        "--misses",
        type=int,
        default=5000,
        help="distinct objects per round (more than a miss run can fetch: none is requested twice)",
    )
    parser.add_argument(
        "--templates",
        type=Path,
        help="the edge's nginx templates to measure (default: nginx/; try a change there)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # rounds as they end
    # stopped (timeout, kill): still stop the servers and drop the schema
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rounds < 3:
        parser.error("--rounds: at least 3")
    nginx = _need("nginx")
    _need("wrk")

    embedded = EmbeddedServices()
    work = Path(tempfile.mkdtemp(prefix="kush-bench-cache-"))
    env_db = os.environ.get("DATABASE_URL") or embedded.start_postgres(work / "pg")
    env_redis = os.environ.get("REDIS_URL") or embedded.start_redis(work / "pg")
    schema = f"kush_bench_{secrets.token_hex(4)}"
    movie_id = str(uuid.uuid4())
    origin = work / "origin"
    source = write_film(origin, movie_id, cached=args.cached, missed=args.misses * args.rounds)
    gw_port, direct_port, usage_port = _free_port(), _free_port(), _free_udp_port()
    settings = Settings(
        database_url=env_db,
        redis_url=env_redis,
        db_schema=schema,
        redis_prefix=f"kushbench:{schema}:",
        master_key=secrets.token_urlsafe(32),
        data_dir=work / "data",
        gateway_port=gw_port,
        edge_port=_free_port(),
        edge_usage_port=usage_port,
        # room for every object of the run: the cached set must never be evicted
        edge_cache_max_mb=args.cached + args.misses * args.rounds + 256,
        trusted_proxies=edge.LOOPBACK,
        edge_templates=args.templates,
    )
    config = edge.render(settings)
    ok, said = edge.check(nginx, config)
    if not ok:
        sys.exit(f"bench: nginx -t failed on the edge configuration: {said}")
    env = {
        **os.environ,
        "DATABASE_URL": env_db,
        "REDIS_URL": env_redis,
        "KUSH_DB_SCHEMA": schema,
        "KUSH_REDIS_PREFIX": settings.redis_prefix,
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_ORIGIN_DIR": str(origin),
        "KUSH_GATEWAY_PORT": str(gw_port),
        "KUSH_EDGE_USAGE_PORT": str(usage_port),
        "KUSH_ADMIN_PORT": str(_free_port()),
        "KUSH_TRUSTED_PROXIES": ",".join(edge.LOOPBACK),
        "KUSH_LOG_LEVEL": "WARNING",
        "KUSH_DATA_DIR": str(settings.data_dir),
    }
    gateway = f"http://127.0.0.1:{gw_port}"
    edge_base = f"http://127.0.0.1:{settings.edge_port}"
    direct_base = f"http://127.0.0.1:{direct_port}"
    static = work / "static"
    static.mkdir()
    work.chmod(0o755)  # the direct nginx's workers (nobody, when started as root) read it
    shutil.copy(source, static / "seg.ts")
    try:
        # bench-edge's schema also plans a free-tier ad (its id); these viewers are premium
        asyncio.run(_prepare_db(settings, movie_id, str(uuid.uuid4())))
        asyncio.run(make_viewers(settings, args.viewers))
        with (
            _process([sys.executable, "-m", "kush", "gateway", "--workers", "1"], env) as gw,
            _process(edge.nginx_command(nginx, config)) as edge_nginx,
            _process(
                [nginx, "-c", str(_direct_conf(static, direct_port, work)), "-p", str(work)]
            ) as direct_nginx,
        ):
            servers = Servers(gateway=gw.pid, edge=edge_nginx.pid, direct=direct_nginx.pid)
            _wait_http(f"{gateway}/healthz")
            _wait_http(f"{edge_base}/healthz")
            _wait_http(f"{direct_base}/seg.ts")
            viewers = asyncio.run(sessions(gateway, movie_id, args.viewers))
            run_bench(args, viewers, edge_base, direct_base, work, servers)
    finally:
        asyncio.run(_drop_schema(env_db, schema))
        embedded.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_bench(
    args: argparse.Namespace,
    viewers: list[dict[str, list[str]]],
    edge_base: str,
    direct_base: str,
    work: Path,
    servers: Servers,
) -> None:
    """Warm the cache, then the alternating rounds; prints everything."""
    hit_one = _write_paths(work / "hit-one.txt", [viewers[0][HIT_RENDITION][0]])
    rotating = [v[HIT_RENDITION][s] for s in range(args.cached) for v in viewers]
    hit_many = _write_paths(work / "hit-many.txt", rotating)
    direct = _write_paths(work / "direct.txt", ["/seg.ts"])
    # warm: every cached segment once (misses), then check they are hits
    warm = _write_paths(work / "warm.txt", viewers[0][HIT_RENDITION])
    wrk(edge_base, warm, once=True, seconds=WARM_S, connections=4)
    check = wrk(edge_base, warm, once=True, seconds=WARM_S, connections=4)
    if check.miss or check.hit < args.cached:
        sys.exit(f"bench: the cache did not warm: {check}")

    print(_machine())
    print(
        f"load generator: wrk -t1 -c{args.connections} -d{args.seconds}s "
        f"--timeout={WRK_TIMEOUT_S}s per run (the miss "
        f"run over {args.misses} distinct objects, each at most once); "
        f"{args.rounds} alternating rounds; segment {SEGMENT_BYTES} bytes; one gateway worker; "
        f"edge and direct nginx: worker_processes auto; all on 127.0.0.1"
    )
    print(
        f"rotating HIT: {len(viewers)} sessions x {args.cached} cached segments = "
        f"{len(rotating)} distinct URLs; load average at start {_load()}\n"
    )
    results: dict[str, list[WrkResult]] = {name: [] for name in RUNS}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in RUNS}
    for rnd in range(args.rounds):
        first = rnd * args.misses
        missed = [viewers[i % len(viewers)][MISS_RENDITION][first + i] for i in range(args.misses)]
        miss_file = _write_paths(work / f"miss-{rnd}.txt", missed)
        timed = {"seconds": args.seconds, "connections": args.connections}
        plan = {
            "nginx direct": (False, direct_base, direct),
            "edge HIT, one URL": (True, edge_base, hit_one),
            "edge HIT, rotating": (True, edge_base, hit_many),
            "edge MISS": (True, edge_base, miss_file),
        }
        print(f"round {rnd + 1} (load {_load()})")
        for name, (on_edge, base_url, paths) in plan.items():
            run = partial(wrk, base_url, paths, once=False, **timed)
            result, nginx_ms, gateway_ms = measured(servers, on_edge, run)
            results[name].append(result)
            cpu[name].append((nginx_ms, gateway_ms))
            print(f"  {name:20} {result.line()}")
            print(
                f"  {'':20} CPU per request: nginx {nginx_ms:.3f} ms, gateway {gateway_ms:.3f} ms"
            )
    print(f"\nmedians of {args.rounds} rounds (load average at the end {_load()})")
    base = statistics.median(r.rps for r in results["nginx direct"])
    for name in RUNS:
        rps = statistics.median(r.rps for r in results[name])
        p50 = statistics.median(r.p50_ms for r in results[name])
        p99 = statistics.median(r.p99_ms for r in results[name])
        ratio = "" if name == "nginx direct" else f"  {rps / base:6.1%} of nginx direct"
        print(f"  {name:20} {rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{ratio}")
    print("\nCPU per request, medians (nginx + gateway; the machine's load does not inflate it)")
    direct_cpu = statistics.median(n for n, _ in cpu["nginx direct"])
    for name in RUNS:
        nginx_ms = statistics.median(n for n, _ in cpu[name])
        gateway_ms = statistics.median(g for _, g in cpu[name])
        share = (
            ""
            if name == "nginx direct"
            else f"  -> CPU-bound: {direct_cpu / (nginx_ms + gateway_ms):6.1%} of nginx direct"
        )
        print(f"  {name:20} nginx {nginx_ms:6.3f} ms  gateway {gateway_ms:6.3f} ms{share}")
    print("goal: edge HIT >= 85 % of nginx direct")
    if any(r.hit for r in results["edge MISS"]):
        print("note: a miss run ran out of distinct objects (HITs in it): raise --misses")


if __name__ == "__main__":
    main()
