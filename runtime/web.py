"""What every Kush aiohttp app shares: typed app keys, middlewares, health and metrics.

``base_app(settings, service)`` returns an application with request ids, JSON access logs,
Prometheus metrics, one error middleware, ``/healthz``, ``/readyz``, ``/metrics``, the
PostgreSQL pool and Redis client opened in ``cleanup_ctx`` (dependency order, closed in
reverse), and the server-side timeouts for stalled clients (a response nobody reads, a
body that trickles in). Services add their routes and domain-error mappings on top.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import re
import struct
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis.exceptions
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from redis.asyncio import Redis

from runtime import db
from runtime.errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from runtime.logs import request_id_var
from runtime.metrics import Metrics
from runtime.redis import Keys, create_redis
from runtime.settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("kush.access")

ErrorMapper = Callable[[Exception], ApiError | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

settings_key = web.AppKey("settings", Settings)
service_key = web.AppKey("service", str)
pg_key = web.AppKey("pg", asyncpg.Pool)
redis_key = web.AppKey("redis", Redis)
rkeys_key = web.AppKey("redis_keys", Keys)

error_mappers_key = web.AppKey("error_mappers", list[ErrorMapper])
request_id_key = web.RequestKey("request_id", str)
#: called as each response is prepared (its head not yet written)
ResponseHook = Callable[[web.Request, web.StreamResponse], None]
#: synchronous hooks run on every response (the write watchdog, CORS, the drain's
#: ``Connection: close``). They replace an ``on_response_prepare`` receiver each: one
#: coroutine runs them all, where a receiver per concern cost a coroutine per response
#: (README, Benchmarks)
response_hooks_key = web.AppKey("response_hooks", list[ResponseHook])

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _RequestIds:
    """Generated request ids: 32 hex characters, a random per-process half and a counter.

    They must be unique, not secret (they are echoed in responses and logs), so one
    ``os.urandom`` per process replaces one per request (uuid4: ~3 us, this: ~0.3 us).
    A forked child draws its own random half."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4)))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


new_request_id = _RequestIds()
JSON_CONTENT_TYPE = "application/json"
DEPENDENCY_RETRY_AFTER_S = 5

#: nginx's status for "the client closed the connection before the response was sent"
CLIENT_CLOSED = 499
#: what an answer cut off because its upstream failed mid-body is logged and counted as
UPSTREAM_ABORTED = 502
REQUEST_TIMEOUT = 408

#: set by :func:`mark_incomplete`: the status to log for a response cut off before its end
incomplete_status_key = web.RequestKey("incomplete_status", int)


def client_gone(request: web.Request) -> bool:
    """True when the client's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


# Exceptions that mean "a dependency is down", never "bad input": answered 503.
_DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, crash, cancelled statement
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
)


metrics_key = web.AppKey("metrics", Metrics)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response: a reply model (``runtime.api``) or plain data encoded with orjson."""
    if isinstance(data, BaseModel):
        body = data.model_dump_json(by_alias=True).encode()
    else:
        body = orjson.dumps(data)
    return web.Response(body=body, status=status, content_type=JSON_CONTENT_TYPE, headers=headers)


def error_body(
    code: str,
    message: str,
    request_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> bytes:
    """The error shape from DESIGN.md, plus detail keys and the request id to quote."""
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err.update({k: v for k, v in details.items() if k not in err})
    if request_id:
        err["request_id"] = request_id
    return orjson.dumps({"error": err})


def error_response(err: ApiError, request_id: str | None = None) -> web.Response:
    """Render an ApiError."""
    response = web.Response(
        body=error_body(err.code, err.message, request_id, err.details),
        status=err.status,
        content_type=JSON_CONTENT_TYPE,
        headers=err.headers,
    )
    if err.status == REQUEST_TIMEOUT:
        # RFC 9110 §15.5.9: the rest of the body is not awaited; the connection closes
        # (after aiohttp's bounded lingering read of what is still coming).
        response.force_close()
    return response


def mark_incomplete(request: web.Request, status: int) -> None:
    """The response was cut off before its declared end: log and count it as ``status``
    (``UPSTREAM_ABORTED`` when the upstream failed mid-body, ``CLIENT_CLOSED`` when the
    client went away or stopped reading), never as the status line that was sent."""
    request[incomplete_status_key] = status


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 for anything else, 413 when too large,
    408 when it does not arrive within ``KUSH_BODY_READ_TIMEOUT_S`` (slowloris)."""
    if request.content_length == 0 or not request.can_read_body:
        raise BadRequest("A JSON object body is required", code="invalid_json")
    try:
        async with asyncio.timeout(request.app[settings_key].body_read_timeout_s):
            body = await request.read()
    except TimeoutError:
        raise ApiError(
            "The request body did not arrive in time",
            code="request_timeout",
            status=REQUEST_TIMEOUT,
        ) from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object", code="invalid_json")
    return data


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


def request_limit(exc: web.HTTPRequestEntityTooLarge) -> str:
    """The configured body limit, as aiohttp reports it in the exception text."""
    match = re.search(r"Maximum request body size (\d+)", exc.text or "")
    return match[1] if match else "the configured limit"


def _http_exception_to_api(exc: web.HTTPException) -> ApiError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("No such resource")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(headers={"Allow": ",".join(sorted(exc.allowed_methods))})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(f"Request body larger than {request_limit(exc)} bytes")
    reason = exc.reason or "Error"
    kept = {"retry-after", "www-authenticate", "allow"}
    headers = {k: v for k, v in exc.headers.items() if k.lower() in kept}
    return ApiError(
        reason, code=reason.lower().replace(" ", "_"), status=exc.status, headers=headers
    )


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (honoured or generated, returned), JSON access log line and metrics;
    and every error as the JSON error shape (:func:`error_response_for`), in the same
    frame: one middleware layer per request instead of two."""
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else new_request_id()
    request[request_id_key] = rid
    token = request_id_var.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except Exception as exc:
            response = error_response_for(request, exc, rid)
        status = request.get(incomplete_status_key, response.status)
        if not response.prepared:
            response.headers["X-Request-ID"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BaseException:
        # a viewer who hangs up mid-request (seek, rendition switch, lost signal) cancels
        # or breaks the handler: counted as 499, never as a server error
        if client_gone(request):
            status = CLIENT_CLOSED
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        request.app[metrics_key].observe_request(route, request.method, status, elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d",
                request.method,
                request.rel_url.path,
                status,
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.rel_url.path,  # never the query: it holds tokens
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                        "remote": request.remote,
                    }
                },
            )
        request_id_var.reset(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes the JSON error shape (for an app without
    :func:`observe_middleware`, which does this itself)."""
    try:
        return await handler(request)
    except Exception as exc:
        return error_response_for(request, exc, request.get(request_id_key))


def error_response_for(request: web.Request, exc: Exception, rid: str | None) -> web.Response:
    """The JSON error answer for ``exc``, raised by a handler; domain errors mapped once
    per app. A redirect (an HTTP exception under 400) is not an error: re-raised."""
    if isinstance(exc, ApiError):
        return _with_rid(error_response(exc, rid), rid)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _with_rid(error_response(_http_exception_to_api(exc), rid), rid)
    for mapper in request.app[error_mappers_key]:
        mapped = mapper(exc)
        if mapped is not None:
            return _with_rid(error_response(mapped, rid), rid)
    if isinstance(exc, OSError) and client_gone(request):
        # the viewer closed the connection (seeked, switched rendition, lost signal):
        # nothing to answer and nothing wrong on our side; logged as 499, not an outage
        log.debug("client closed the connection on %s", request.rel_url.path)
        return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
    if isinstance(exc, _DEPENDENCY_ERRORS):
        log.warning("dependency unavailable: %s", type(exc).__name__)
        unavailable = ServiceUnavailable(
            "A backing service is unavailable; try again shortly",
            code="dependency_unavailable",
            retry_after=DEPENDENCY_RETRY_AFTER_S,
        )
        return _with_rid(error_response(unavailable, rid), rid)
    log.error("unhandled error on %s %s", request.method, request.rel_url.path, exc_info=exc)
    internal = ApiError("Internal error", code="internal_error", status=500)
    return _with_rid(error_response(internal, rid), rid)


def _with_rid(response: web.Response, rid: str | None) -> web.Response:
    if rid:
        response.headers["X-Request-ID"] = rid
    return response


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok", "service": request.app[service_key], "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: PostgreSQL and Redis both answer within a second."""
    app = request.app
    checks: dict[str, str] = {}

    async def pg() -> None:
        async with app[pg_key].acquire(timeout=1.0) as conn:
            await conn.fetchval("SELECT 1")

    async def rd() -> None:
        await app[redis_key].ping()

    for name, probe in (("postgres", pg), ("redis", rd)):
        try:
            async with asyncio.timeout(1.5):
                await probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(DEPENDENCY_RETRY_AFTER_S)},
    )


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text exposition of the service's metrics (every worker's, added up,
    when the gateway runs several: `runtime.metrics`)."""
    body = await request.app[metrics_key].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _kernel_queue(transport: asyncio.Transport) -> int:
    """Bytes the kernel holds for this socket, not yet acknowledged by the client
    (``SIOCOUTQ``); -1 where that cannot be asked."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return -1
    try:
        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return -1
    return int(struct.unpack("i", out)[0])


class WriteWatchdog:
    """Drops connections whose client stopped reading (``KUSH_CLIENT_WRITE_TIMEOUT_S``).

    While a client's TCP window is shut, what a response still has to send waits in the
    transport's buffer, and whatever the handler holds (a segment being streamed) stays
    in memory. Every connection that sent a response is watched: when bytes wait in its
    buffer and neither their amount nor the kernel's queue of unacknowledged bytes has
    moved for ``timeout`` seconds, the connection is aborted, which ends the handler's
    writes with a connection error. A slow client that reads at all moves the kernel's
    queue (its acknowledgements), so it is never dropped; an idle keep-alive connection
    has nothing waiting and is left to aiohttp's keep-alive timeout.
    """

    def __init__(
        self,
        timeout: float,
        *,
        on_drop: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._on_drop = on_drop
        self._clock = clock
        # id(transport) -> (transport, (bytes buffered, kernel queue) at the last
        # look, since when they have been so)
        self._watched: dict[int, tuple[asyncio.Transport, tuple[int, int], float]] = {}

    @property
    def interval(self) -> float:
        """How often :meth:`run` looks (a quarter of the timeout, at most a second)."""
        return min(1.0, self.timeout / 4)

    def watch(self, transport: asyncio.Transport | None) -> None:
        """Watch this connection until it closes (a no-op if already watched)."""
        if transport is not None and id(transport) not in self._watched:
            self._watched[id(transport)] = (transport, (0, 0), self._clock())

    def sweep(self) -> int:
        """Look at every watched connection once; abort the stalled ones, return how many."""
        now = self._clock()
        dropped = 0
        for key, (transport, seen, since) in list(self._watched.items()):
            if transport.is_closing():
                del self._watched[key]
                continue
            waiting = transport.get_write_buffer_size()
            state = (waiting, _kernel_queue(transport) if waiting else 0)
            if waiting == 0 or state != seen:
                self._watched[key] = (transport, state, now)
            elif now - since >= self.timeout:
                del self._watched[key]
                transport.abort()
                dropped += 1
                self._on_drop()
        return dropped

    async def run(self) -> None:
        """Sweep every :attr:`interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            dropped = self.sweep()
            if dropped:
                log.info("dropped %d connections whose client stopped reading", dropped)


write_watchdog_key = web.AppKey("write_watchdog", WriteWatchdog)


def _watch_writes(request: web.Request, response: web.StreamResponse) -> None:
    """A response hook: the connection is about to send; watch it for stalls."""
    request.app[write_watchdog_key].watch(request.transport)


async def _watchdog_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[write_watchdog_key].run(), name="write-watchdog")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _pg_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    pool = await db.create_pool(settings)
    app[pg_key] = pool
    yield
    await pool.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = create_redis(app[settings_key])
    app[redis_key] = client
    yield
    await client.aclose()


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    async with app[metrics_key].refreshing():
        yield


def base_app(
    settings: Settings,
    service: str,
    *,
    client_max_size: int | None = None,
    metrics_dir: Path | None = None,
) -> web.Application:
    """An application with the shared middlewares, health routes and resources;
    ``metrics_dir`` when it is one of several processes whose metrics add up
    (`runtime.metrics`)."""
    app = web.Application(
        middlewares=[observe_middleware],
        client_max_size=client_max_size or settings.max_body_bytes,
    )
    app[settings_key] = settings
    app[service_key] = service
    metrics = Metrics(service, multiproc=metrics_dir)
    app[metrics_key] = metrics
    app[write_watchdog_key] = WriteWatchdog(
        settings.client_write_timeout_s,
        on_drop=metrics.write_timeouts.labels(service).inc,
    )
    app[rkeys_key] = Keys(settings.redis_prefix)
    app[error_mappers_key] = []
    hooks: list[ResponseHook] = [_watch_writes]
    app[response_hooks_key] = hooks

    async def run_response_hooks(request: web.Request, response: web.StreamResponse) -> None:
        for hook in hooks:
            hook(request, response)

    app.on_response_prepare.append(run_response_hooks)
    app.cleanup_ctx.append(_watchdog_ctx)
    app.cleanup_ctx.append(_pg_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_metrics_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
