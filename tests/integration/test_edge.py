"""The nginx edge with real nginx in front of a real gateway: segments shared through a
cache whose key leaves the token out, yet never sent without a valid token and a live
session; playlists never cached; playback started through the edge stays on the edge.

The gateway runs in-process (aiohttp's test server on a free loopback port), nginx as a
subprocess on another; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import io
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from gateway.ads.tracking import stream_key
from gateway.app import create_app
from kush import edge
from runtime import db
from runtime.redis import Keys
from runtime.settings import Settings
from runtime.web import redis_key
from tests.conftest import DEMO_PASSWORD, AdFilm, Film
from tests.integration.helpers import (
    PASSWORD,
    ffmpeg_reads,
    free_port,
    free_udp_port,
    new_email,
)

pytestmark = pytest.mark.slow

NGINX = edge.find_nginx()
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

START_TIMEOUT_S = 20.0


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclasses.dataclass
class Edge:
    url: str
    tls_url: str
    settings: Settings
    config: edge.EdgeConfig
    gateway: Any  # the in-process TestServer

    def access_log(self) -> list[dict[str, Any]]:
        path = self.config.directory / "logs" / "access.log"
        return [orjson.loads(line) for line in path.read_text().splitlines() if line]


async def _wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.returncode is None, "nginx exited at start"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("nginx did not start listening in time")


async def run_edge(settings: Settings, aiohttp_server: Any, work: Path) -> AsyncIterator[Edge]:
    """The gateway (trusting loopback) in-process and nginx in front of it."""
    assert NGINX is not None
    # its own Redis prefix: the registrations here must not use up the run's
    # per-address register limit that other test files rely on
    gw_settings = dataclasses.replace(
        settings,
        trusted_proxies=edge.LOOPBACK,
        redis_prefix=settings.redis_prefix + "edge:",
        edge_usage_port=free_udp_port(),
    )
    server = await aiohttp_server(create_app(gw_settings))
    cert, key = self_signed(work)
    edge_settings = dataclasses.replace(
        gw_settings,
        data_dir=work,
        gateway_port=server.port,
        edge_port=free_port(),
        edge_tls_port=free_port(),
        edge_tls_cert=cert,
        edge_tls_key=key,
    )
    config = edge.render(edge_settings)
    ok, said = edge.check(NGINX, config)
    assert ok, said
    proc = await asyncio.create_subprocess_exec(
        *edge.nginx_command(NGINX, config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await _wait_listening(edge_settings.edge_port, proc)
        await _wait_listening(edge_settings.edge_tls_port, proc)
        yield Edge(
            url=f"http://127.0.0.1:{edge_settings.edge_port}",
            tls_url=f"https://127.0.0.1:{edge_settings.edge_tls_port}",
            settings=edge_settings,
            config=config,
            gateway=server,
        )
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def edge_for(
    play_settings: Settings, aiohttp_server: Any, tmp_path: Path
) -> AsyncIterator[Edge]:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    async for running in run_edge(play_settings, aiohttp_server, tmp_path):
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


# ------------------------------------------------------------------ helpers


async def login(http: aiohttp.ClientSession, base: str, email: str, password: str) -> str:
    async with http.post(
        f"{base}/v1/auth/login", json={"email": email, "password": password}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


async def fresh_viewer(http: aiohttp.ClientSession, base: str) -> str:
    """A new free account (its own stream slot) and its access token."""
    email = new_email()
    async with http.post(
        f"{base}/v1/auth/register", json={"email": email, "password": PASSWORD}
    ) as resp:
        assert resp.status == 201, await resp.text()
    return await login(http, base, email, PASSWORD)


async def start(
    http: aiohttp.ClientSession, base: str, token: str, movie_id: str, **headers: str
) -> dict[str, Any]:
    async with http.post(
        f"{base}/v1/playback/{movie_id}",
        headers={"Authorization": f"Bearer {token}", **headers},
    ) as resp:
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def resolve(base_url: str, uri: str) -> str:
    """A playlist URI against the playlist's URL (absolute paths keep the host)."""
    return str(URL(base_url, encoded=True).join(URL(uri, encoded=True)))


async def get(
    http: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with http.get(URL(url, encoded=True), headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def first_segments(
    http: aiohttp.ClientSession, manifest_url: str, rendition: str = "480p"
) -> list[str]:
    """The segment URLs of one rendition of a session, in playlist order."""
    status, _, master = await get(http, manifest_url)
    assert status == 200
    variant = next(u for u in uris(master.decode()) if u.startswith(f"{rendition}/"))
    media_url = resolve(manifest_url, variant)
    status, _, media = await get(http, media_url)
    assert status == 200
    return [resolve(media_url, u) for u in uris(media.decode())]


def with_token(url: str, token: str | None) -> str:
    path = url.split("?", 1)[0]
    return path if token is None else f"{path}?t={token}"


def token_of(url: str) -> str:
    return url.split("?t=", 1)[1]


def flipped(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


# ------------------------------------------------------------------ the configuration


@needs_nginx
def test_rendered_config_passes_nginx_t(tmp_path: Path, settings: Settings) -> None:
    """`nginx -t` on the rendered files: plain, with TLS and a CDN in front, with a CORS
    allow-list; and `kush edge --check` says the same."""
    assert NGINX is not None
    cert, key = self_signed(tmp_path)
    settings = dataclasses.replace(settings, edge_usage_port=8089)
    variants = [
        dataclasses.replace(settings, data_dir=tmp_path / "plain"),
        dataclasses.replace(
            settings,
            data_dir=tmp_path / "full",
            host="::1",
            edge_tls_cert=cert,
            edge_tls_key=key,
            trusted_proxies=(*edge.LOOPBACK, "173.245.48.0/20", "2400:cb00::/32"),
            cors_allowed_origins=("https://kushfilms.example", "http://localhost:3000"),
        ),
    ]
    for variant in variants:
        ok, said = edge.check(NGINX, edge.render(variant))
        assert ok, said
    full = (tmp_path / "full" / "edge" / "kush-edge.conf").read_text()
    assert "ssl_certificate " + str(cert) in full
    assert "set_real_ip_from 173.245.48.0/20;" in full
    assert "set_real_ip_from 127.0.0.1/32;" not in full
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "KUSH_DATA_DIR": str(tmp_path / "cli"),
        "KUSH_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kush", "edge", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "is valid" in proc.stdout
    assert (tmp_path / "cli" / "edge" / "kush-edge.conf").is_file()


# ------------------------------------------------------------------ playback through the edge


async def test_ffmpeg_plays_a_session_through_the_edge(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    token = await fresh_viewer(http, edge_for.url)
    body = await start(http, edge_for.url, token, film.movie_id)
    # handed out on the edge, not on the gateway behind it
    assert body["manifest_url"].startswith(edge_for.url + "/hls/")
    await ffmpeg_reads(body["manifest_url"])
    segments: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10  # nginx flushes its log buffer every second
    while not segments and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        segments = [e for e in edge_for.access_log() if e["path"].endswith(".ts")]
    assert segments
    assert all(e["status"] in {"200", "206"} for e in segments), segments
    assert {"cache", "upstream_time", "request_time", "request_id"} <= set(segments[0])
    # the access log never holds a token
    raw = (edge_for.config.directory / "logs" / "access.log").read_text()
    assert "?t=" not in raw
    assert token_of(body["manifest_url"]) not in raw


async def test_second_viewer_gets_a_hit_and_ranges_come_from_the_cache(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    a = await start(http, edge_for.url, await fresh_viewer(http, edge_for.url), film.movie_id)
    b = await start(http, edge_for.url, await fresh_viewer(http, edge_for.url), film.movie_id)
    seg_a = (await first_segments(http, a["manifest_url"]))[0]
    seg_b = (await first_segments(http, b["manifest_url"]))[0]
    assert seg_a.split("?")[0] == seg_b.split("?")[0]
    assert token_of(seg_a) != token_of(seg_b)

    status, headers, first = await get(http, seg_a)
    assert status == 200
    assert headers["X-Cache-Status"] in {"MISS", "HIT"}  # HIT if another test filled it
    # the viewer still gets the gateway's rule: private, never a shared cache's business
    assert headers["Cache-Control"].startswith("private")
    status, headers, second = await get(http, seg_b)
    assert status == 200
    assert headers["X-Cache-Status"] == "HIT"
    assert second == first
    assert headers["Content-Type"] == "video/mp2t"
    # a byte range, answered from the cached slice
    status, headers, part = await get(http, seg_b, Range="bytes=100-1099")
    assert status == 206
    assert headers["X-Cache-Status"] == "HIT"
    assert part == first[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(first)}"


async def test_bad_or_missing_token_refused_even_when_cached(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    body = await start(http, edge_for.url, await fresh_viewer(http, edge_for.url), film.movie_id)
    segments = await first_segments(http, body["manifest_url"])
    status, headers, data = await get(http, segments[0])
    assert status == 200
    status, headers, _ = await get(http, segments[0])
    assert headers["X-Cache-Status"] == "HIT"  # cached: the refusals below are the edge's

    cases = {
        "tampered": (with_token(segments[0], flipped(token_of(segments[0]))), 403),
        "another segment's token": (with_token(segments[0], token_of(segments[1])), 403),
        "garbage": (with_token(segments[0], "x" * 44), 403),
        "missing": (with_token(segments[0], None), 401),
        "empty": (with_token(segments[0], ""), 401),
    }
    for name, (url, expected) in cases.items():
        status, headers, refused = await get(http, url)
        assert status == expected, name
        assert headers["X-Cache-Status"] != "HIT", name
        assert headers["Content-Type"] == "application/json", name
        assert data[:64] not in refused, name
        error = orjson.loads(refused)["error"]
        assert error["code"] in {"token_required", "invalid_token", "invalid", "forbidden"} or (
            error["code"].startswith(("invalid", "bad", "expired", "token"))
        ), (name, error)
        assert error["request_id"] == headers["X-Request-ID"]
    # the same with a byte range
    status, _, refused = await get(
        http, with_token(segments[0], flipped(token_of(segments[0]))), Range="bytes=0-99"
    )
    assert status == 403


async def test_revoked_session_refused_although_cached(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    filler = await start(http, edge_for.url, await fresh_viewer(http, edge_for.url), film.movie_id)
    viewer_token = await fresh_viewer(http, edge_for.url)
    viewer = await start(http, edge_for.url, viewer_token, film.movie_id)
    filled = await first_segments(http, filler["manifest_url"])
    mine = await first_segments(http, viewer["manifest_url"])
    for url in filled[:2]:
        assert (await get(http, url))[0] == 200
    status, headers, _ = await get(http, mine[0])
    assert (status, headers["X-Cache-Status"]) == (200, "HIT")

    async with http.delete(
        f"{edge_for.url}/v1/playback/{viewer['session_id']}",
        headers={"Authorization": f"Bearer {viewer_token}"},
    ) as resp:
        assert resp.status == 204
    # a cached segment this session never asked for: refused at once
    status, headers, body = await get(http, mine[1])
    assert status == 403
    assert orjson.loads(body)["error"]["code"] == "session_revoked"
    # the one it fetched just before: refused once the edge's 2 s yes has lapsed
    deadline = time.monotonic() + 15
    while (await get(http, mine[0]))[0] == 200:
        assert time.monotonic() < deadline, "a revoked session kept getting bytes"
        await asyncio.sleep(0.25)
    status, _, body = await get(http, mine[0])
    assert status == 403
    assert orjson.loads(body)["error"]["code"] == "session_revoked"
    # the other viewer is not affected
    assert (await get(http, filled[0]))[0] == 200


async def test_playlists_are_never_cached(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    token = await fresh_viewer(http, edge_for.url)
    body = await start(http, edge_for.url, token, film.movie_id)
    master_url = body["manifest_url"]
    _, _, master = await get(http, master_url)
    media_url = resolve(master_url, uris(master.decode())[0])
    for url in (master_url, media_url):
        seen = []
        for _ in range(3):
            status, headers, raw = await get(http, url, **{"Accept-Encoding": "gzip"})
            assert status == 200, len(raw)
            assert headers["Cache-Control"] == "private, no-store"
            assert headers["Content-Encoding"] == "gzip"  # decoded by the client
            assert raw.startswith(b"#EXTM3U")
            seen.append(headers["X-Cache-Status"])
        assert "HIT" not in seen
        assert set(seen) == {"BYPASS"}
    # nothing of a playlist lands in the shared cache
    cached = b"".join(
        p.read_bytes() for p in (edge_for.config.directory / "cache").rglob("*") if p.is_file()
    )
    assert b"#EXTM3U" not in cached
    # a bad token on a playlist is the gateway's refusal, passed through
    status, headers, _ = await get(http, with_token(master_url, flipped(token_of(master_url))))
    assert status == 403
    assert headers["X-Cache-Status"] == "BYPASS"


async def test_ad_segments_shared_and_counted_on_hits(
    edge_for: Edge, http: aiohttp.ClientSession, ad_film: AdFilm
) -> None:
    """Two free viewers: the second one's ad segment is a HIT, yet its impression is
    recorded (the auth check does the gateway's bookkeeping)."""
    sessions = []
    for _ in range(2):
        body = await start(
            http, edge_for.url, await fresh_viewer(http, edge_for.url), ad_film.movie_id
        )
        assert body["ads"] is True
        sessions.append(body)
    firsts = []
    for body in sessions:
        segments = await first_segments(http, body["manifest_url"], rendition="360p")
        firsts.append(next(u for u in segments if "/hls/ads/" in u))
    assert firsts[0].split("?")[0] == firsts[1].split("?")[0]
    status, _, one = await get(http, firsts[0])
    assert status == 200
    status, headers, two = await get(http, firsts[1])
    assert (status, headers["X-Cache-Status"]) == (200, "HIT")
    assert one == two
    redis = edge_for.gateway.app[redis_key]
    keys = Keys(edge_for.settings.redis_prefix)
    entries = await redis.xrange(stream_key(keys), count=100_000)
    impressions = {
        fields[b"session_id"].decode() for _, fields in entries if fields[b"event"] == b"impression"
    }
    assert sessions[1]["session_id"] in impressions


async def test_through_the_edge_the_client_cannot_claim_an_address_or_country(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    """The viewer connects from 127.0.0.2 (not the edge's 127.0.0.1): the gateway
    records that address, from the edge's X-Forwarded-For, and neither the address nor
    the country the client wrote itself."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as elsewhere:
        token = await fresh_viewer(elsewhere, edge_for.url)
        body = await start(
            elsewhere,
            edge_for.url,
            token,
            film.movie_id,
            **{"X-Forwarded-For": "203.0.113.7", edge_for.settings.geo_header: "KE"},
        )
    assert await session_origin(edge_for.settings, body["session_id"]) == ("127.0.0.2", None)


async def session_origin(settings: Settings, session_id: str) -> tuple[str, str | None]:
    """The client address and country the gateway recorded for a session."""
    conn = await db.connect(settings)
    try:
        row = await conn.fetchrow(
            "SELECT client_ip, country FROM playback_sessions WHERE id = $1", session_id
        )
    finally:
        await conn.close()
    assert row is not None
    return str(row["client_ip"]), row["country"]


async def test_tls_server_hsts_and_https_manifest(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    base = edge_for.tls_url
    email = new_email()
    async with http.post(
        f"{base}/v1/auth/register", json={"email": email, "password": PASSWORD}, ssl=insecure
    ) as resp:
        assert resp.status == 201
    async with http.post(
        f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD}, ssl=insecure
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        token = (await resp.json())["access_token"]
    async with http.post(
        f"{base}/v1/playback/{film.movie_id}",
        headers={"Authorization": f"Bearer {token}"},
        ssl=insecure,
    ) as resp:
        assert resp.status == 201
        manifest = (await resp.json())["manifest_url"]
    assert manifest.startswith(base + "/hls/")
    # plain HTTP never claims HSTS
    async with http.get(f"{edge_for.url}/healthz") as resp:
        assert "Strict-Transport-Security" not in resp.headers


async def test_headers_cors_and_internal_paths(
    edge_for: Edge, http: aiohttp.ClientSession, film: Film
) -> None:
    token = await fresh_viewer(http, edge_for.url)
    body = await start(http, edge_for.url, token, film.movie_id)
    segment = (await first_segments(http, body["manifest_url"]))[0]
    status, headers, _ = await get(http, segment, Origin="https://player.example")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"]
    assert "X-Request-ID" in headers
    # preflight for a ranged fetch from another origin: answered by the edge
    async with http.options(
        URL(segment, encoded=True),
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    ) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Range" in resp.headers["Access-Control-Allow-Headers"]
    # the auth check and the metrics are not reachable through the edge
    for path in ("/_edge/auth", "/_edge/other", "/metrics"):
        async with http.get(f"{edge_for.url}{path}") as resp:
            assert resp.status == 404, path
            assert (await resp.json())["error"]["code"] == "not_found"
    # only GET/HEAD on HLS files
    async with http.post(URL(segment, encoded=True)) as resp:
        assert resp.status == 405
    # the gateway's own pages keep their stricter headers (not doubled by the edge)
    async with http.get(f"{edge_for.url}/") as resp:
        assert resp.headers.getall("Referrer-Policy") == ["same-origin"]
        assert resp.headers.getall("X-Content-Type-Options") == ["nosniff"]


@needs_nginx
async def test_sign_in_flood_is_limited_per_address(
    play_settings: Settings, aiohttp_server: Any, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    limited = dataclasses.replace(play_settings, edge_auth_rate=1)
    async for running in run_edge(limited, aiohttp_server, tmp_path):
        statuses = []
        for _ in range(30):
            async with http.post(f"{running.url}/v1/auth/login", data=b"{") as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert resp.headers["Retry-After"] == "1"
                    assert (await resp.json())["error"]["code"] == "rate_limited"
        assert 400 in statuses  # the gateway answered the first ones (bad JSON)
        assert 429 in statuses


@needs_nginx
async def test_body_over_the_limit_is_refused_by_the_edge(
    edge_for: Edge, http: aiohttp.ClientSession
) -> None:
    big = io.BytesIO(b"x" * (edge_for.settings.max_body_bytes + 1))
    async with http.post(f"{edge_for.url}/v1/auth/register", data=big) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"


# ------------------------------------------------------------------ the auth check itself


@pytest.fixture
async def gateway(play_settings: Settings, aiohttp_client: Any) -> Any:
    own = dataclasses.replace(play_settings, redis_prefix=play_settings.redis_prefix + "auth:")
    return await aiohttp_client(create_app(own))


async def _ask(client: Any, original: str | None) -> tuple[int, str | None]:
    headers = {} if original is None else {"X-Original-URI": original}
    resp = await client.get("/_edge/auth", headers=headers)
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.status, resp.headers.get("X-Kush-Error")


async def test_auth_check_answers_for_one_exact_uri(gateway: Any, film: Film) -> None:
    email = new_email()
    resp = await gateway.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status == 201
    resp = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = (await resp.json())["access_token"]
    resp = await gateway.post(
        f"/v1/playback/{film.movie_id}", headers={"Authorization": f"Bearer {token}"}
    )
    body = await resp.json()
    master_path = str(URL(body["manifest_url"], encoded=True).relative())
    master = await (await gateway.get(master_path)).text()
    variant = next(u for u in uris(master) if u.startswith("480p/"))
    media_path = f"/hls/{film.movie_id}/{variant}"
    media = await (await gateway.get(media_path)).text()
    seg0, seg1 = (f"/hls/{film.movie_id}/480p/{u}" for u in uris(media)[:2])

    assert await _ask(gateway, seg0) == (204, None)
    assert await _ask(gateway, seg0 + "&x=1") == (204, None)
    assert await _ask(gateway, with_token(seg0, None)) == (401, "token_required")
    assert (await _ask(gateway, with_token(seg0, flipped(token_of(seg0)))))[0] == 403
    assert (await _ask(gateway, with_token(seg0, token_of(seg1))))[0] == 403
    # the same path under another film, another rendition: refused
    other = seg0.replace(film.movie_id, film.resume_movie_id)
    assert (await _ask(gateway, other))[0] == 403
    assert (await _ask(gateway, seg0.replace("/480p/", "/1080p/")))[0] == 403
    # playlists are never answered from a cache, so never authorized here
    assert await _ask(gateway, master_path) == (403, "invalid_token")
    for bad in (None, "", "/v1/me", "http://evil.example/hls/x/y/z.ts?t=a", "/hls/only"):
        assert (await _ask(gateway, bad))[0] == 403, bad
    # an ended session: refused, with the reason nginx shows the player
    resp = await gateway.delete(
        f"/v1/playback/{body['session_id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 204
    assert await _ask(gateway, seg0) == (403, "session_revoked")


# ------------------------------------------------------------------ kush up with the edge


@needs_nginx
async def test_kush_up_with_the_edge(
    play_settings: Settings, film: Film, http: aiohttp.ClientSession
) -> None:
    """`KUSH_EDGE=1 kush up`: nginx in front, the gateway trusting it, the edge's URL in
    the banner; SIGTERM stops nginx with the rest."""
    gw, adm, edge_port = free_port(), free_port(), free_port()
    settings = play_settings
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "KUSH_DB_SCHEMA": settings.db_schema,
        "KUSH_REDIS_PREFIX": settings.redis_prefix + "up:",
        "KUSH_MASTER_KEY": settings.master_key or "",
        "KUSH_DEMO_PASSWORD": DEMO_PASSWORD,
        "KUSH_DATA_DIR": str(settings.data_dir / "up"),
        "KUSH_ORIGIN_DIR": str(film.origin_dir),
        "KUSH_GATEWAY_PORT": str(gw),
        "KUSH_ADMIN_PORT": str(adm),
        "KUSH_EDGE_PORT": str(edge_port),
        "KUSH_EDGE_USAGE_PORT": str(free_udp_port()),
        "KUSH_EDGE": "1",
        "KUSH_SEED_DEMO_FILM": "false",
        "KUSH_LOG_LEVEL": "WARNING",
        "KUSH_REGISTER_LIMIT_PER_HOUR": "10000",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kush",
        "up",
        "--workers",
        "1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{edge_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.returncode is None, "kush up exited"
            assert time.monotonic() < deadline, "the edge did not become ready"
            try:
                async with http.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as elsewhere:
            body = await start(elsewhere, base, await fresh_viewer(elsewhere, base), film.movie_id)
        assert body["manifest_url"].startswith(base + "/hls/")
        segment = (await first_segments(http, body["manifest_url"]))[0]
        status, headers, _ = await get(http, segment)
        assert status == 200
        assert headers["X-Cache-Status"] in {"MISS", "HIT"}
        # the gateway believed the edge: the viewer's own address, not the edge's
        assert (await session_origin(settings, body["session_id"]))[0] == "127.0.0.2"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"edge     {base}/" in text
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", edge_port)
