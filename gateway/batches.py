"""What the gateway's background batch writers share (data usage in
:mod:`gateway.metering`, watch progress in :mod:`gateway.playback`): the batch being
written now, marked with the viewers whose rows it holds so a read for one of them can
wait for it, and the write step that hands a failed batch back to its queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import asyncpg

log = logging.getLogger(__name__)

#: a database that is down or slow: the writer keeps the batch and tries again
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # TimeoutError included
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

Batch = TypeVar("Batch")


class InFlight:
    """The batch a background writer is writing now: whose rows are in it, and its end."""

    def __init__(self) -> None:
        self._now: tuple[frozenset[str], asyncio.Event] | None = None

    async def write(
        self,
        write: Callable[[Batch], Awaitable[None]],
        batch: Batch,
        *,
        viewers: Iterable[str],
        keep: Callable[[Batch], None],
        what: str,
    ) -> bool:
        """Write ``batch``, marked in flight for ``viewers`` meanwhile. On a database
        error it goes back through ``keep`` and the answer is False; on cancellation
        (shutting down) it goes back too, for the final flush, and the cancellation
        goes on."""
        done = asyncio.Event()
        self._now = (frozenset(viewers), done)
        try:
            await write(batch)
        except asyncio.CancelledError:
            keep(batch)
            raise
        except DB_ERRORS as exc:
            log.warning("%s not written yet (%s); retrying", what, type(exc).__name__)
            keep(batch)
            return False
        finally:
            self._now = None
            done.set()
        return True

    async def settle(
        self,
        viewer: str,
        *,
        take: Callable[[str], Batch],
        write: Callable[[Batch], Awaitable[None]],
        keep: Callable[[Batch], None],
        timeout_s: float,
    ) -> None:
        """Write one viewer's queued rows now, so a read that follows sees them: wait
        (bounded, :meth:`settled`) for a batch in flight with their rows, take theirs
        from the queue (``take(viewer)``; nothing to do when it is empty) and write them. On a
        database error they go back through ``keep`` and the error is raised (the
        caller decides whether a read goes on without them)."""
        await self.settled(viewer, timeout_s=timeout_s)
        batch = take(viewer)
        if not batch:
            return
        try:
            await write(batch)
        except DB_ERRORS:
            keep(batch)
            raise

    async def settled(self, viewer: str, *, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for a batch in flight with this viewer's rows, so
        a read that follows sees them; at once when there is none."""
        now = self._now
        if now is None or viewer not in now[0]:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(now[1].wait(), timeout=timeout_s)
