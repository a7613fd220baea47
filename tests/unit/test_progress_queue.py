"""The bounded progress queue between segment fetches and PostgreSQL."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from gateway.playback import ProgressMark, ProgressQueue


def _counter() -> tuple[Counter, CollectorRegistry]:
    registry = CollectorRegistry()
    return Counter("kush_progress_dropped", "dropped", registry=registry), registry


def _mark(user: str, position: float, at: float) -> ProgressMark:
    return ProgressMark(user_id=user, movie_id="m", position=position, duration=100.0, at=at)


def test_full_queue_drops_and_counts() -> None:
    dropped, registry = _counter()
    queue = ProgressQueue(maxsize=2, dropped=dropped)
    assert queue.offer(_mark("a", 1, 1))
    assert queue.offer(_mark("b", 1, 1))
    assert not queue.offer(_mark("c", 1, 1))
    assert registry.get_sample_value("kush_progress_dropped_total") == 1
    assert len(queue) == 2


def test_a_newer_mark_for_the_same_viewer_replaces_the_queued_one() -> None:
    dropped, registry = _counter()
    queue = ProgressQueue(maxsize=1, dropped=dropped)
    assert queue.offer(_mark("a", 6, 1))
    assert queue.offer(_mark("a", 12, 2))  # same viewer and film: no new slot needed
    assert len(queue) == 1
    assert registry.get_sample_value("kush_progress_dropped_total") == 0


async def test_writer_retries_until_the_database_answers() -> None:
    dropped, _ = _counter()
    queue = ProgressQueue(maxsize=10, dropped=dropped, retry_s=0.01)
    written: list[ProgressMark] = []
    failures = 2
    two, three = asyncio.Event(), asyncio.Event()

    async def write(batch: list[ProgressMark]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionRefusedError("database down")
        written.extend(batch)
        if len(written) >= 2:
            two.set()
        if len(written) >= 3:
            three.set()

    queue.offer(_mark("a", 6, 1))
    queue.offer(_mark("b", 3, 1))
    task = asyncio.create_task(queue.run(write))
    try:
        async with asyncio.timeout(10):
            await two.wait()
            queue.offer(_mark("a", 12, 2))
            await three.wait()
    finally:
        task.cancel()
    assert failures == 0
    assert sorted((m.user_id, m.position) for m in written) == [("a", 6), ("a", 12), ("b", 3)]


async def test_an_older_retry_never_overwrites_a_newer_mark() -> None:
    """A batch that failed goes back to the queue, but not over a newer position."""
    dropped, _ = _counter()
    queue = ProgressQueue(maxsize=10, dropped=dropped)
    queue.offer(_mark("a", 12, 2))
    queue.requeue([_mark("a", 6, 1)])
    batch = queue.take()
    assert [(m.user_id, m.position) for m in batch] == [("a", 12)]


async def test_flush_writes_what_is_left_and_gives_up_in_time() -> None:
    dropped, _ = _counter()
    queue = ProgressQueue(maxsize=10, dropped=dropped)
    queue.offer(_mark("a", 6, 1))
    written: list[ProgressMark] = []

    async def write(batch: list[ProgressMark]) -> None:
        written.extend(batch)

    assert await queue.flush(write, timeout_s=1.0)
    assert [m.position for m in written] == [6]

    async def hang(batch: list[ProgressMark]) -> None:
        await asyncio.sleep(3600)

    queue.offer(_mark("a", 7, 2))
    assert not await queue.flush(hang, timeout_s=0.05)  # shutdown is never held up


def test_one_viewers_positions_can_be_taken_out_first() -> None:
    """History and resume read PostgreSQL: the viewer's queued positions go first."""
    dropped, _ = _counter()
    queue = ProgressQueue(maxsize=10, dropped=dropped)
    queue.offer(_mark("a", 6, 1))
    queue.offer(_mark("b", 3, 1))
    assert [(m.user_id, m.position) for m in queue.take_viewer("a")] == [("a", 6)]
    assert queue.take_viewer("a") == []
    assert len(queue) == 1
