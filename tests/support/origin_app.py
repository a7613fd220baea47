"""What the origin store tests share: a one-route app over a store, a guard that fails a
test when the server logged an error the client could not see, and the HTTP contract
both stores must keep (each test module stores ``DATA`` under ``SEGMENT`` in its ``store``
fixture and imports the ``test_*`` functions below, so pytest runs them for each store)."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from origin import (
    InvalidObjectKey,
    ObjectNotFound,
    OriginStore,
    OriginUnavailable,
    object_key,
)

CACHE = "public, max-age=31536000, immutable"
SEGMENT = object_key("videos", "m1", "720p", "seg_00042.ts")
DATA = os.urandom(5000)
AnyClient = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[AnyClient]]


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test if the server or the store logged an error (e.g. a response that
    aiohttp could not finish), even when the client saw a good answer."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def origin_app(store: OriginStore) -> web.Application:
    """An app whose one handler serves origin objects, with the gateway's error mapping."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await store.serve(request, request.match_info["key"], cache_control=CACHE)
        except (ObjectNotFound, InvalidObjectKey) as err:
            raise web.HTTPNotFound() from err
        except OriginUnavailable as err:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": str(err.retry_after)}) from err

    app = web.Application()
    app.router.add_get("/o/{key:.+}", handle)
    return app


# -- the HTTP contract of every OriginStore.serve --------------------------------


async def test_range(client: AnyClient) -> None:
    response = await client.get(f"/o/{SEGMENT}", headers={"Range": "bytes=100-199"})
    assert response.status == 206
    assert await response.read() == DATA[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
    assert response.headers["Content-Length"] == "100"
    assert response.headers["Cache-Control"] == CACHE


async def test_suffix_range(client: AnyClient) -> None:
    response = await client.get(f"/o/{SEGMENT}", headers={"Range": "bytes=-10"})
    assert response.status == 206
    assert await response.read() == DATA[-10:]
    assert response.headers["Content-Range"] == f"bytes 4990-4999/{len(DATA)}"


@pytest.mark.parametrize("value", ["bytes=6000-", "bytes=5000-5001", "bytes=0-1,5-6", "lines=1-2"])
async def test_unsatisfiable_range_is_416(client: AnyClient, value: str) -> None:
    response = await client.get(f"/o/{SEGMENT}", headers={"Range": value})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.read() == b""


async def test_if_none_match_is_304(client: AnyClient) -> None:
    etag = (await client.get(f"/o/{SEGMENT}")).headers["ETag"]
    response = await client.get(f"/o/{SEGMENT}", headers={"If-None-Match": etag})
    assert response.status == 304
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == CACHE
    assert await response.read() == b""
    other = await client.get(f"/o/{SEGMENT}", headers={"If-None-Match": '"something-else"'})
    assert other.status == 200
    assert await other.read() == DATA


async def test_head(client: AnyClient) -> None:
    response = await client.head(f"/o/{SEGMENT}")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Cache-Control"] == CACHE
    assert await response.read() == b""
    etag = response.headers["ETag"]
    assert (await client.head(f"/o/{SEGMENT}", headers={"If-None-Match": etag})).status == 304
    ranged = await client.head(f"/o/{SEGMENT}", headers={"Range": "bytes=0-9"})
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 0-9/{len(DATA)}"
