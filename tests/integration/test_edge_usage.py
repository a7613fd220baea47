"""Data metering through the real nginx edge: the edge reports the bytes it sends for
every segment (cache hit or miss, byte ranges) in a UDP access-log line to the gateway,
the gateway counts the playlists it answers, and nothing is counted twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import Film
from tests.integration.test_edge import (  # noqa: F401 - fixtures used by name
    Edge,
    edge_for,
    first_segments,
    fresh_viewer,
    get,
    http,
    resolve,
    start,
    uris,
)

pytestmark = pytest.mark.slow

FRESH_WITHIN_S = 15.0


async def _usage(client: aiohttp.ClientSession, base: str, token: str) -> Any:
    async with client.get(
        f"{base}/v1/me/usage", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_the_edge_reports_segment_bytes_once_hit_or_miss(
    edge_for: Edge,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
    pg: asyncpg.Connection,
    film: Film,
) -> None:
    token = await fresh_viewer(http, edge_for.url)
    body = await start(http, edge_for.url, token, film.movie_id)
    manifest = body["manifest_url"]
    status, _, master = await get(http, manifest)
    assert status == 200
    segments = await first_segments(http, manifest, "360p")
    variant = next(u for u in uris(master.decode()) if u.startswith("360p/"))
    status, _, media = await get(http, resolve(manifest, variant))
    assert status == 200
    # master twice and the media playlist twice (first_segments read them once)
    playlists = 2 * (len(master) + len(media))
    sent = 0
    for url in segments[:2]:
        for _ in range(2):  # a miss (or a hit), then surely a hit
            status, headers, data = await get(http, url)
            assert status == 200
            sent += len(data)
    status, headers, part = await get(http, segments[0], Range="bytes=100-1099")
    assert status == 206
    assert headers["X-Cache-Status"] == "HIT"
    sent += len(part)

    query = """SELECT coalesce(sum(bytes), 0) AS bytes, coalesce(sum(edge_bytes), 0) AS edge
                 FROM data_usage WHERE session_id = $1"""
    deadline = time.monotonic() + FRESH_WITHIN_S
    row = await pg.fetchrow(query, body["session_id"])
    while row["bytes"] < playlists + sent and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        row = await pg.fetchrow(query, body["session_id"])
    assert (row["bytes"], row["edge"]) == (playlists + sent, sent)
    # and the viewer sees it through the edge
    usage = await _usage(http, edge_for.url, token)
    assert [(i["movie_id"], i["bytes"]) for i in usage["items"]] == [
        (film.movie_id, playlists + sent)
    ]


async def test_there_is_no_usage_route(
    edge_for: Edge,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """The bytes arrive over UDP only: no HTTP report, through the edge or not."""
    status, _, _ = await get(http, f"{edge_for.url}/_edge/usage")
    assert status == 404
    status, _, _ = await get(http, str(edge_for.gateway.make_url("/_edge/usage")))
    assert status == 404
