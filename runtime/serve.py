"""Run one aiohttp application process, and drain it gracefully on SIGTERM/SIGINT.

A drain (``KUSH_DRAIN_TIMEOUT_S``, 25 s by default) goes:

1. The listening socket closes first. With ``SO_REUSEPORT`` the kernel gives new
   connections to the sibling processes on the same port; alone, new connections are
   refused.
2. Requests in flight run to their end (a segment being streamed to a slow phone
   included). Every response that starts from now on says ``Connection: close`` and its
   connection closes after it, so a client never sends another request on it.
3. A connection with no request in flight is closed once it has had none for
   :data:`IDLE_CLOSE_S`: a client sending requests back to back is answered (with
   ``Connection: close``) rather than cut while idle, and one that went quiet goes.
4. When no connection is left the process stops (cleanup hooks, exit status 0). At the
   drain timeout, what is still running is cancelled: those clients see a cut transfer.

HTTP/1.1 has no way to warn an idle keep-alive client, so one that sends a request on a
connection in the instant it is closed (after :data:`IDLE_CLOSE_S` of silence) sees the
connection close unanswered, the case RFC 9112 section 9.3.1 lets clients retry
(browsers, hls.js and aiohttp do, for GETs).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler

from runtime.web import response_hooks_key

log = logging.getLogger(__name__)

#: a connection with no request for this long during a drain is closed
IDLE_CLOSE_S = 1.0
#: how often a drain looks at its connections
DRAIN_POLL_S = 0.05
#: what aiohttp still waits for handlers after the drain timeout before cancelling them
CANCEL_GRACE_S = 1.0
#: idle keep-alive connections close after this long outside a drain (aiohttp's default)
KEEPALIVE_TIMEOUT_S = 75.0


def in_flight(conn: RequestHandler) -> bool:
    """A request is running on ``conn`` and its response is not fully written yet.

    aiohttp's ``RequestHandler`` keeps exactly this flag (set from the start of the
    handler's task until the response's last byte is handed to the transport; it is
    what aiohttp's own shutdown waits on). Reading it costs nothing per request, where
    tracking the same thing ourselves took a request hook and an access logger on every
    request (~8 us under wrk; README, Benchmarks). ``tests/unit/test_rolling_restart``
    checks the flag against a real server, should an aiohttp upgrade rename it."""
    return bool(getattr(conn, "_request_in_progress", False))


class ConnectionActivity:
    """During a drain, since when each connection has been idle.

    A connection is idle when :func:`in_flight` says so; the drain looks every
    :data:`DRAIN_POLL_S` and a connection's idle time counts from the first look that
    found it idle (reset by a look that finds it busy). During a drain every response
    closes its connection, so a connection cannot go busy and idle again unseen
    between two looks more than once.
    """

    def __init__(self) -> None:
        self._idle_since: dict[RequestHandler, float] = {}
        #: the loop time the drain began, None while serving normally
        self.draining_since: float | None = None

    def busy(self, conn: RequestHandler) -> bool:
        """A request started on ``conn`` and its response is not fully written yet."""
        return in_flight(conn)

    def idle_for(self, conn: RequestHandler, now: float) -> float:
        """Seconds ``conn`` has been seen idle during the drain (0 when busy or not
        draining); each call is a look."""
        if self.draining_since is None:
            return 0.0
        if self.busy(conn):
            self._idle_since.pop(conn, None)
            return 0.0
        return now - self._idle_since.setdefault(conn, now)

    def on_prepare(self, _request: web.Request, response: web.StreamResponse) -> None:
        """A response hook (``runtime.web.response_hooks_key``): while draining, no
        response keeps its connection."""
        if self.draining_since is not None:
            # aiohttp has written the Connection header into the response head by now:
            # both the header and the connection's fate are set here
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"


async def drain(
    runner: web.AppRunner, activity: ConnectionActivity, timeout_s: float
) -> tuple[int, int]:
    """Close the listening sockets, then wait (at most ``timeout_s``) for every connection
    to finish its request, closing each once idle for :data:`IDLE_CLOSE_S`. Returns the
    connections (open, still busy) left when it gave up: (0, 0) when drained."""
    loop = asyncio.get_running_loop()
    for site in list(runner.sites):
        await site.stop()  # the listening socket: siblings take new connections
    activity.draining_since = loop.time()
    deadline = activity.draining_since + timeout_s
    server = runner.server
    while server is not None and server.connections:
        now = loop.time()
        if now >= deadline:
            conns = server.connections
            return len(conns), sum(1 for c in conns if activity.busy(c))
        for conn in server.connections:
            if activity.idle_for(conn, now) >= IDLE_CLOSE_S:
                conn.force_close()
        await asyncio.sleep(DRAIN_POLL_S)
    return 0, 0


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    drain_timeout_s: float,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` (``SO_REUSEPORT``) until SIGTERM or SIGINT, then
    drain (see the module doc) and clean up. ``on_ready`` runs once the app has started
    and the socket listens. SIGHUP is ignored (logged): the supervisor, not the worker,
    does rolling restarts."""
    loop = asyncio.get_running_loop()
    activity = ConnectionActivity()
    app[response_hooks_key].append(activity.on_prepare)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,  # runtime.web writes the access log
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        shutdown_timeout=CANCEL_GRACE_S,
    )
    stop = asyncio.Event()
    stop_signal: list[str] = []

    def on_stop(sig: signal.Signals) -> None:
        stop_signal.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(
        signal.SIGHUP, log.info, "SIGHUP ignored: rolling restarts are the supervisor's"
    )
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        if on_ready is not None:
            on_ready()
        await stop.wait()
        server = runner.server
        log.info(
            "%s: draining %d connections (at most %g s)",
            stop_signal[0],
            len(server.connections) if server is not None else 0,
            drain_timeout_s,
        )
        left, busy = await drain(runner, activity, drain_timeout_s)
        if left:
            log.warning(
                "drain timeout (%g s): closing %d connections, %d with a request in flight",
                drain_timeout_s,
                left,
                busy,
            )
        else:
            log.info("drained")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
