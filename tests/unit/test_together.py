"""``runtime.together.both``: two awaits at once, with the outcome of running them in
turn (results in order; the first one's error wins; nothing left running)."""

from __future__ import annotations

import asyncio

import pytest

from runtime.together import both


async def _value(value: str, *, after_s: float = 0.0) -> str:
    await asyncio.sleep(after_s)
    return value


async def _fail(message: str, *, after_s: float = 0.0) -> str:
    await asyncio.sleep(after_s)
    raise ValueError(message)


async def test_results_come_back_in_argument_order() -> None:
    assert await both(_value("slow", after_s=0.02), _value("fast")) == ("slow", "fast")


async def test_overlaps_the_two_awaits() -> None:
    order: list[str] = []

    async def step(name: str, gate: asyncio.Event, opens: asyncio.Event) -> str:
        order.append(f"{name} started")
        opens.set()
        await gate.wait()  # each waits for the other to have started: deadlock if in turn
        return name

    a_started, b_started = asyncio.Event(), asyncio.Event()
    result = await asyncio.wait_for(
        both(step("a", b_started, a_started), step("b", a_started, b_started)), timeout=5
    )
    assert result == ("a", "b")
    assert order == ["a started", "b started"]


async def test_the_first_error_wins_even_when_the_second_fails_sooner() -> None:
    with pytest.raises(ValueError, match="first"):
        await both(_fail("first", after_s=0.02), _fail("second"))


async def test_the_second_error_when_only_the_second_fails() -> None:
    with pytest.raises(ValueError, match="second"):
        await both(_value("ok"), _fail("second"))


async def test_nothing_is_left_running_after_a_failure() -> None:
    finished: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.02)
        finished.append("slow")
        return "slow"

    with pytest.raises(ValueError, match="first"):
        await both(_fail("first"), slow())
    assert finished == ["slow"]
