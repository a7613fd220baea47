"""Data metering in a gateway process: summed per session and day, bounded, written in
batches, put back when a write fails."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.metering import Tally, UsageKey, UsageMeter, usage_rows, utc_day
from gateway.repository import film_megabytes
from gateway.views.usage import usage_range
from runtime.api import InvalidRequest

DAY = date(2026, 11, 30)


def _meter(max_entries: int = 10) -> tuple[UsageMeter, CollectorRegistry]:
    registry = CollectorRegistry()
    dropped = Counter("kush_usage_dropped_bytes", "dropped", registry=registry)
    return UsageMeter(max_entries=max_entries, dropped=dropped), registry


def _key(session: str, user: str = "u1", day: date = DAY) -> UsageKey:
    return UsageKey(session, user, "m1", day)


def test_bytes_are_summed_per_session_and_day() -> None:
    meter, _ = _meter()
    meter.add(_key("s1"), 1000)
    meter.add(_key("s1"), 500, edge=True)
    meter.add(_key("s1", day=date(2026, 12, 1)), 7)
    meter.add(_key("s2"), 0)  # nothing delivered: no entry
    batch = meter.take()
    assert batch == {
        _key("s1"): Tally(bytes=1500, edge_bytes=500),
        _key("s1", day=date(2026, 12, 1)): Tally(bytes=7, edge_bytes=0),
    }
    assert len(meter) == 0


def test_a_full_meter_drops_new_keys_and_counts_their_bytes() -> None:
    meter, registry = _meter(max_entries=1)
    assert meter.add(_key("s1"), 10)
    assert meter.add(_key("s1"), 10)  # an existing key always fits
    assert not meter.add(_key("s2"), 99)
    assert registry.get_sample_value("kush_usage_dropped_bytes_total") == 99
    assert meter.take() == {_key("s1"): Tally(20, 0)}


def test_a_failed_batch_is_merged_back_with_what_arrived_since() -> None:
    meter, _ = _meter()
    meter.add(_key("s1"), 100, edge=True)
    batch = meter.take()
    meter.add(_key("s1"), 5)
    meter.restore(batch)
    assert meter.take() == {_key("s1"): Tally(105, 100)}


def test_rows_are_ordered_for_the_upsert() -> None:
    rows = usage_rows({_key("b"): Tally(2, 0), _key("a"): Tally(1, 1)})
    assert [r[0] for r in rows] == ["a", "b"]
    assert rows[0] == ("a", DAY, "u1", "m1", 1, 1)


async def test_the_writer_writes_batches_and_retries_a_failed_one() -> None:
    meter, _ = _meter()
    written: list[dict[UsageKey, Tally]] = []
    failures = [asyncpg.PostgresConnectionError("down")]
    done = asyncio.Event()

    async def write(batch: Mapping[UsageKey, Tally]) -> None:
        if failures:
            raise failures.pop()
        written.append(dict(batch))
        done.set()

    task = asyncio.create_task(meter.run(write, interval_s=0.01))
    try:
        meter.add(_key("s1"), 10)
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert written == [{_key("s1"): Tally(10, 0)}]


async def test_settle_writes_one_viewers_counts_now() -> None:
    meter, _ = _meter()
    written: list[dict[UsageKey, Tally]] = []

    async def write(batch: Mapping[UsageKey, Tally]) -> None:
        written.append(dict(batch))

    meter.add(_key("s1", user="u1"), 10)
    meter.add(_key("s2", user="u2"), 20)
    await meter.settle(write, "u1", timeout_s=1)
    assert written == [{_key("s1", user="u1"): Tally(10, 0)}]
    assert meter.take() == {_key("s2", user="u2"): Tally(20, 0)}


async def test_flush_at_shutdown_counts_what_it_could_not_write() -> None:
    meter, registry = _meter()

    async def down(_batch: Mapping[UsageKey, Tally]) -> None:
        raise OSError("no database")

    meter.add(_key("s1"), 42)
    assert not await meter.flush(down, timeout_s=1)
    assert registry.get_sample_value("kush_usage_dropped_bytes_total") == 42


def test_utc_day() -> None:
    assert utc_day(0) == date(1970, 1, 1)
    assert utc_day(86399.9) == date(1970, 1, 1)
    assert utc_day(1_796_083_199) == date(2026, 11, 30)
    assert utc_day(1_796_083_200) == date(2026, 12, 1)


def test_film_megabytes_from_bandwidth_and_duration() -> None:
    # 1.1 Mbit/s for 40 minutes: 330 MB
    assert film_megabytes(1_100_000, 2400) == 330.0
    assert film_megabytes(1_100_000, -1) == 0.0


def test_usage_range_defaults_to_this_month() -> None:
    assert usage_range(None, None, today=DAY) == (date(2026, 11, 1), DAY)
    assert usage_range(date(2026, 1, 1), date(2026, 1, 31), today=DAY) == (
        date(2026, 1, 1),
        date(2026, 1, 31),
    )
    with pytest.raises(InvalidRequest):
        usage_range(date(2026, 2, 1), date(2026, 1, 1), today=DAY)
    with pytest.raises(InvalidRequest):
        usage_range(date(2024, 1, 1), date(2026, 1, 1), today=DAY)
