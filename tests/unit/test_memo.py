"""Bounded tables and shared builds (runtime/memo.py)."""

from __future__ import annotations

import asyncio

import pytest

from runtime.memo import SingleFlight, remember


def test_remember_drops_the_oldest_entry_at_the_limit() -> None:
    table: dict[str, int] = {}
    for n, key in enumerate("abc"):
        assert remember(table, key, n, limit=2) == n
    assert table == {"b": 1, "c": 2}


async def test_single_flight_shares_one_build_and_builds_again_after_a_failure() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    runs = 0
    release = asyncio.Event()

    async def build() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        if runs == 1:
            raise ValueError("first build fails")
        return runs

    callers = [asyncio.ensure_future(flights.run("k", build)) for _ in range(5)]
    await asyncio.sleep(0)
    callers[0].cancel()  # one caller going away does not cancel the build
    release.set()
    results = await asyncio.gather(*callers[1:], return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, ValueError) for r in results)
    assert await flights.run("k", build) == 2
    with pytest.raises(asyncio.CancelledError):
        await callers[0]
