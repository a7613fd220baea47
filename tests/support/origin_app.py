"""What the origin store tests share: a one-route app over a store, and a guard that
fails a test when the server logged an error the client could not see."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from origin import InvalidObjectKey, ObjectNotFound, OriginStore, OriginUnavailable

CACHE = "public, max-age=31536000, immutable"
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
