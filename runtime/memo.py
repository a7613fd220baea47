"""Per-process memo tables: bounded first-in-first-out tables, and builds that
concurrent callers of one key share (:class:`SingleFlight`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Put ``value`` under ``key``, first dropping the oldest entry when ``table`` already
    holds ``limit`` (dicts keep insertion order); returns ``value``."""
    if len(table) >= limit:
        table.pop(next(iter(table)))
    table[key] = value
    return value


class SingleFlight(Generic[K, V]):
    """Concurrent misses of one key share one build: a cold worker asked sixteen times
    at once for a two-hour playlist reads and compiles it once. A caller that goes away
    does not cancel the build the others wait for; a failure reaches every caller and the
    next call builds again."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, build: Callable[[], Awaitable[V]]) -> V:
        """The result of ``build()``, or of the build of ``key`` already running."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(build())
            self._running[key] = task
            task.add_done_callback(partial(self._done, key))
        return await asyncio.shield(task)

    def _done(self, key: K, task: asyncio.Future[Any]) -> None:
        self._running.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller went away
