"""Rolling restarts in the supervisor, and which connections a drain closes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import cast

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.web_protocol import RequestHandler

from kush.supervisor import Child, Supervisor
from runtime.serve import IDLE_CLOSE_S, ConnectionActivity, in_flight
from runtime.settings import Settings, SettingsError

# Says it is ready on the supervisor's pipe (when given one), then waits for SIGTERM.
SERVER = """
import os, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
fd = os.environ.get("KUSH_READY_FD")
if fd:
    os.write(int(fd), b"1")
    os.close(int(fd))
signal.pause()
"""
# Runs like SERVER when started normally; as a replacement it dies before listening.
BROKEN_RELEASE = """
import os, signal, sys
if os.environ.get("KUSH_READY_FD"):
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
"""


@pytest.fixture
def sup() -> Iterator[Supervisor]:
    supervisor = Supervisor({}, grace_s=10)
    yield supervisor
    supervisor.stop()


def _add(sup: Supervisor, name: str, script: str, *, roll: bool) -> Child:
    """A child started as ``spawn`` would; a SERVER one is waited for until it listens
    (the old process of a rolling restart has long been up)."""
    child = Child(name, [sys.executable, "-c", script], on_reload="roll" if roll else "ignore")
    if script == SERVER:
        child.proc = sup._start_ready(child)
        child.started_at = time.monotonic()
        assert child.proc is not None
    else:
        sup._start(child)
    sup.children.append(child)
    return child


def test_roll_replaces_each_worker_after_its_replacement_is_ready(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    workers = [_add(sup, f"gateway-{i}", SERVER, roll=True) for i in range(2)]
    other = _add(sup, "admin", SERVER, roll=False)
    old = [w.proc for w in workers]
    admin_proc = other.proc
    with caplog.at_level(logging.INFO, logger="kush.supervisor"):
        assert sup.roll() == 2
        for before, worker in zip(old, workers, strict=True):
            assert worker.proc is not before
            assert worker.proc is not None
            assert worker.proc.poll() is None
            assert before is not None
            assert before.wait(timeout=30) == 0
        assert other.proc is admin_proc
        assert admin_proc is not None
        assert admin_proc.poll() is None
        assert [r.proc for r in sup.retiring] == old
        sup.check(time.monotonic())
    assert sup.retiring == []
    for before in old:
        assert before is not None
        assert f"old pid {before.pid} exited with status 0" in caplog.text
    assert "rolling restart done: 2 of 2 processes replaced" in caplog.text


def test_a_replacement_that_dies_keeps_the_old_worker(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    worker = _add(sup, "gateway-0", BROKEN_RELEASE, roll=True)
    running = worker.proc
    with caplog.at_level(logging.ERROR, logger="kush.supervisor"):
        assert sup.roll() == 0
    assert worker.proc is running
    assert running is not None
    assert running.poll() is None
    assert sup.retiring == []
    assert "exited with status 3" in caplog.text
    assert "rolling restart stopped: gateway-0 kept its old process" in caplog.text


# A nested supervisor stand-in: exits 7 when it gets SIGHUP.
NESTED = """
import os, signal, sys
signal.signal(signal.SIGHUP, lambda *_: sys.exit(7))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
fd = os.environ.get("KUSH_READY_FD")
if fd:
    os.write(int(fd), b"1")
    os.close(int(fd))
signal.pause()
"""


def test_a_forward_child_gets_the_sighup_instead(sup: Supervisor) -> None:
    nested = Child("gateway", [sys.executable, "-c", NESTED], on_reload="forward")
    nested.proc = sup._start_ready(nested)  # up, its handlers installed
    sup.children.append(nested)
    assert nested.proc is not None
    first = nested.proc
    assert sup.roll() == 0  # nothing replaced here: the child rolls its own workers
    assert first.wait(timeout=30) == 7
    assert nested.proc is first


def test_stop_waits_for_retiring_workers_too(sup: Supervisor) -> None:
    worker = _add(sup, "gateway-0", SERVER, roll=True)
    first = worker.proc
    assert sup.roll() == 1
    assert sup.stop() == 0
    assert first is not None
    assert first.returncode == 0
    assert worker.proc is not None
    assert worker.proc.returncode == 0
    assert sup.retiring == []


def test_sighup_reaches_the_supervisor_not_its_default_action() -> None:
    # wait() installs the handler; the default action of SIGHUP would end the process
    sup = Supervisor({})
    previous = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, sup._on_reload)
        signal.raise_signal(signal.SIGHUP)
        assert sup.reload_requested
    finally:
        signal.signal(signal.SIGHUP, previous)


class _Conn:
    """Stands in for aiohttp's RequestHandler: hashable, with its in-progress flag."""

    _request_in_progress = False


def _conn(busy: bool = False) -> RequestHandler:
    conn = _Conn()
    conn._request_in_progress = busy
    return cast(RequestHandler, conn)


def test_a_drain_closes_connections_idle_since_it_began_or_since_their_last_answer() -> None:
    activity = ConnectionActivity()
    quiet, answering, busy = _conn(), _conn(busy=True), _conn(busy=True)
    assert activity.busy(busy)
    assert not activity.busy(quiet)
    assert activity.idle_for(quiet, 500.0) == 0.0  # not draining: aiohttp's keep-alive rules

    activity.draining_since = 110.0
    for conn in (quiet, answering, busy):  # the drain's first look
        assert activity.idle_for(conn, 110.0) == 0.0
    cast(_Conn, answering)._request_in_progress = False  # its answer (Connection: close)
    assert activity.idle_for(answering, 110.8) == 0.0  # seen idle from here

    at = 110.0 + IDLE_CLOSE_S
    assert activity.idle_for(quiet, at) == IDLE_CLOSE_S  # idle since the drain began
    assert activity.idle_for(answering, at) == pytest.approx(IDLE_CLOSE_S - 0.8)
    assert activity.idle_for(busy, at + 60) == 0.0  # in flight: waits for its answer


def test_a_look_that_finds_a_connection_busy_restarts_its_idle_time() -> None:
    activity = ConnectionActivity()
    activity.draining_since = 0.0
    conn = _conn()
    assert activity.idle_for(conn, 0.0) == 0.0
    assert activity.idle_for(conn, 0.5) == 0.5
    cast(_Conn, conn)._request_in_progress = True
    assert activity.idle_for(conn, 0.6) == 0.0
    cast(_Conn, conn)._request_in_progress = False
    assert activity.idle_for(conn, 0.7) == 0.0
    assert activity.idle_for(conn, 0.9) == pytest.approx(0.2)


async def test_aiohttp_flags_a_request_in_flight_until_its_response_is_written(
    aiohttp_client: AiohttpClient,
) -> None:
    """The drain reads aiohttp's own flag (``runtime.serve.in_flight``): it must be set
    while the handler runs and while its response is written, and clear after."""
    seen: list[tuple[RequestHandler, bool, bool]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        during_handler = in_flight(request.protocol)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x" * 65536)
        seen.append((request.protocol, during_handler, in_flight(request.protocol)))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    async with client.get("/") as resp:
        assert len(await resp.read()) == 65536
    conn, during_handler, during_write = seen[0]
    assert during_handler
    assert during_write
    for _ in range(500):  # cleared just after the last byte is handed over: look a while
        if not in_flight(conn):
            break
        await asyncio.sleep(0.01)
    assert not in_flight(conn)


def test_drain_timeout_setting() -> None:
    assert Settings.from_env({}).drain_timeout_s == 25
    assert Settings.from_env({"KUSH_DRAIN_TIMEOUT_S": "0"}).drain_timeout_s == 0
    with pytest.raises(SettingsError, match="KUSH_DRAIN_TIMEOUT_S"):
        Settings.from_env({"KUSH_DRAIN_TIMEOUT_S": "soon"})
