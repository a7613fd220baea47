"""The shared step of the gateway's background batch writers (gateway.batches)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.batches import InFlight


async def test_a_reader_waits_for_the_batch_with_its_viewer_only() -> None:
    flight = InFlight()
    release = asyncio.Event()
    written: list[list[str]] = []

    async def write(batch: list[str]) -> None:
        await release.wait()
        written.append(batch)

    task = asyncio.create_task(
        flight.write(write, ["row"], viewers=["a"], keep=written.append, what="rows")
    )
    await asyncio.sleep(0)
    await asyncio.wait_for(flight.settled("b", timeout_s=5), timeout=0.5)  # not in it
    waiter = asyncio.create_task(flight.settled("a", timeout_s=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    release.set()
    await asyncio.wait_for(waiter, timeout=1)
    assert await task is True
    assert written == [["row"]]
    await asyncio.wait_for(flight.settled("a", timeout_s=5), timeout=0.5)  # none now


async def test_settled_is_bounded() -> None:
    flight = InFlight()

    async def never(_batch: list[str]) -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(flight.write(never, ["x"], viewers=["a"], keep=print, what="x"))
    await asyncio.sleep(0)
    await asyncio.wait_for(flight.settled("a", timeout_s=0.05), timeout=1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "error", [OSError("down"), TimeoutError(), asyncpg.InterfaceError("closed")]
)
async def test_a_failed_batch_is_kept(error: Exception) -> None:
    flight = InFlight()
    kept: list[list[str]] = []

    async def fail(_batch: list[str]) -> None:
        raise error

    assert await flight.write(fail, ["x"], viewers=["a"], keep=kept.append, what="x") is False
    assert kept == [["x"]]
    await asyncio.wait_for(flight.settled("a", timeout_s=5), timeout=0.5)


async def test_a_cancelled_write_keeps_its_batch_and_stays_cancelled() -> None:
    flight = InFlight()
    kept: list[list[str]] = []

    async def slow(_batch: list[str]) -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(flight.write(slow, ["x"], viewers=["a"], keep=kept.append, what="x"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kept == [["x"]]


async def test_other_errors_are_not_swallowed() -> None:
    flight = InFlight()

    async def bug(_batch: list[str]) -> None:
        raise KeyError("bug")

    kept: list[list[str]] = []
    with pytest.raises(KeyError):
        await flight.write(bug, ["x"], viewers=["a"], keep=kept.append, what="x")
    assert kept == []
    await asyncio.wait_for(flight.settled("a", timeout_s=5), timeout=0.5)


async def test_settle_writes_the_viewers_rows_after_the_batch_in_flight() -> None:
    flight = InFlight()
    release = asyncio.Event()
    order: list[str] = []

    async def slow(batch: list[str]) -> None:
        await release.wait()
        order.append(f"batch {batch}")

    async def write(batch: list[str]) -> None:
        order.append(f"settle {batch}")

    queue = {"a": ["a2"], "b": ["b1"]}
    task = asyncio.create_task(
        flight.write(slow, ["a1"], viewers=["a"], keep=order.append, what="rows")
    )
    await asyncio.sleep(0)
    settling = asyncio.create_task(
        flight.settle(
            "a",
            take=lambda viewer: queue.pop(viewer, []),
            write=write,
            keep=order.append,
            timeout_s=5,
        )
    )
    await asyncio.sleep(0.01)
    assert order == []  # waits for the batch in flight with the viewer's rows
    release.set()
    await asyncio.wait_for(settling, timeout=1)
    assert await task is True
    assert order == ["batch ['a1']", "settle ['a2']"]
    assert queue == {"b": ["b1"]}  # only the viewer's rows were taken


async def test_settle_with_nothing_queued_writes_nothing() -> None:
    async def write(_batch: list[str]) -> None:
        raise AssertionError("nothing to write")

    await InFlight().settle("a", take=lambda _viewer: [], write=write, keep=print, timeout_s=1)


async def test_settle_hands_rows_back_on_a_database_error_and_raises() -> None:
    kept: list[list[str]] = []

    async def down(_batch: list[str]) -> None:
        raise ConnectionRefusedError

    with pytest.raises(ConnectionRefusedError):
        await InFlight().settle(
            "a", take=lambda _viewer: ["a1"], write=down, keep=kept.append, timeout_s=1
        )
    assert kept == [["a1"]]
