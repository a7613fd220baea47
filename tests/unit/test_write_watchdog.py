"""The write watchdog's rule, with a fake clock and fake transports: a connection is
dropped when bytes wait and nothing moves for the whole timeout, never otherwise."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from runtime.web import WriteWatchdog


class FakeTransport:
    def __init__(self) -> None:
        self.waiting = 0
        self.aborted = False
        self.closing = False

    def get_write_buffer_size(self) -> int:
        return self.waiting

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: only the buffer is looked at


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watched(timeout: float = 30) -> tuple[WriteWatchdog, FakeTransport, Clock, list[int]]:
    clock = Clock()
    drops: list[int] = []
    dog = WriteWatchdog(timeout, on_drop=lambda: drops.append(1), clock=clock)
    transport = FakeTransport()
    dog.watch(cast(asyncio.Transport, transport))
    return dog, transport, clock, drops


def test_bytes_that_do_not_move_for_the_timeout_drop_the_connection() -> None:
    dog, transport, clock, drops = watched()
    transport.waiting = 65536
    assert dog.sweep() == 0  # first seen waiting: the clock starts
    clock.now += 29
    assert dog.sweep() == 0
    assert not transport.aborted
    clock.now += 1
    assert dog.sweep() == 1
    assert transport.aborted
    assert drops == [1]
    clock.now += 60
    assert dog.sweep() == 0  # forgotten once dropped


def test_moving_bytes_restart_the_clock() -> None:
    dog, transport, clock, _ = watched()
    for step in range(10):
        transport.waiting = 65536 - step  # the client takes a little at a time
        clock.now += 20
        assert dog.sweep() == 0
    assert not transport.aborted


def test_nothing_waiting_is_never_a_stall() -> None:
    dog, transport, clock, _ = watched()
    for _ in range(5):
        clock.now += 100  # an idle keep-alive connection
        assert dog.sweep() == 0
    assert not transport.aborted
    transport.waiting = 10
    assert dog.sweep() == 0  # waiting only from now on
    clock.now += 29
    assert dog.sweep() == 0


def test_closed_connections_are_forgotten() -> None:
    dog, transport, clock, _ = watched()
    transport.waiting = 100
    dog.sweep()
    transport.closing = True
    clock.now += 100
    assert dog.sweep() == 0
    assert not transport.aborted


def test_sweeps_are_frequent_enough() -> None:
    assert WriteWatchdog(30).interval == 1.0
    assert WriteWatchdog(2).interval == 0.5
