"""Data metering: bytes delivered per playback session, summed in memory by each gateway
process and added to PostgreSQL in batches (``data_usage``), never one write per segment.

:class:`UsageMeter` is the in-process tally: ``add`` is a dictionary update (a segment
never waits on PostgreSQL); ``run`` takes everything counted so far every
``KUSH_USAGE_FLUSH_S`` seconds and writes it with one statement. A failed write puts the
counts back (merged with what arrived meanwhile) and is retried; at shutdown what is left
is written, bounded in time.

Bounds: at most ``max_entries`` (session, UTC day) tallies are held; bytes for a new
tally beyond that are dropped and counted (``kush_usage_dropped_bytes_total``). A process
that dies loses at most what it counted since its last successful flush (a few seconds of
its traffic; longer only while PostgreSQL is down).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from prometheus_client import Counter

from gateway.batches import DB_ERRORS, InFlight

log = logging.getLogger(__name__)

USAGE_MAX_ENTRIES = 100_000
USAGE_FLUSH_TIMEOUT_S = 2.0


class UsageKey(NamedTuple):
    """Whose bytes: one playback session (its viewer and film) on one UTC day.

    A named tuple: built and hashed on every segment and playlist answer, and a tuple's
    hash and equality are C code where a frozen dataclass's are Python."""

    session_id: str
    user_id: str
    movie_id: str
    day: date


@dataclass(slots=True)
class Tally:
    """Bytes counted for one key: all of them, and the part the edge reported."""

    bytes: int = 0
    edge_bytes: int = 0


UsageWrite = Callable[[Mapping[UsageKey, Tally]], Awaitable[None]]


_EPOCH_DAY = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=4)
def _day(number: int) -> date:
    return date.fromordinal(_EPOCH_DAY + number)


def utc_day(ts: float) -> date:
    """The UTC day of a Unix time (cheap: the segment path asks for it)."""
    return _day(int(ts // 86400))


class UsageMeter:
    """Bytes counted in this process and not yet written: bounded, summed per key."""

    def __init__(self, *, max_entries: int = USAGE_MAX_ENTRIES, dropped: Counter) -> None:
        self.max_entries = max_entries
        self.dropped = dropped
        self._pending: dict[UsageKey, Tally] = {}
        self._flight = InFlight()  # the batch the writer is writing now

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: UsageKey, nbytes: int, *, edge: bool = False) -> bool:
        """Count ``nbytes`` delivered; False (and the bytes counted as dropped) when the
        tally table is full and this key is new."""
        if nbytes <= 0:
            return True
        tally = self._pending.get(key)
        if tally is None:
            if len(self._pending) >= self.max_entries:
                self.dropped.inc(nbytes)
                return False
            tally = self._pending[key] = Tally()
        tally.bytes += nbytes
        if edge:
            tally.edge_bytes += nbytes
        return True

    def take(self) -> dict[UsageKey, Tally]:
        """Everything counted so far, removed from the meter."""
        batch, self._pending = self._pending, {}
        return batch

    def restore(self, batch: Mapping[UsageKey, Tally]) -> None:
        """Put back the counts of a write that failed, adding to what arrived since (a
        key that no longer fits is dropped and counted)."""
        for key, old in batch.items():
            tally = self._pending.get(key)
            if tally is None:
                if len(self._pending) >= self.max_entries:
                    self.dropped.inc(old.bytes)
                    continue
                tally = self._pending[key] = Tally()
            tally.bytes += old.bytes
            tally.edge_bytes += old.edge_bytes

    async def run(self, write: UsageWrite, *, interval_s: float) -> None:
        """Every ``interval_s``, write what was counted (until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            batch = self.take()
            if batch:
                viewers = (key.user_id for key in batch)
                await self._flight.write(
                    write, batch, viewers=viewers, keep=self.restore, what="data usage"
                )

    async def settle(self, write: UsageWrite, user_id: str, *, timeout_s: float) -> None:
        """Write this process's counts of one viewer now (and wait, bounded, for a batch
        in flight with them), so a usage read that follows includes them."""
        await self._flight.settle(
            user_id,
            take=self.take_viewer,
            write=write,
            keep=self.restore,
            timeout_s=timeout_s,
        )

    def take_viewer(self, user_id: str) -> dict[UsageKey, Tally]:
        """One viewer's counts, removed from the meter."""
        mine = {k: v for k, v in self._pending.items() if k.user_id == user_id}
        for key in mine:
            del self._pending[key]
        return mine

    async def flush(self, write: UsageWrite, *, timeout_s: float = USAGE_FLUSH_TIMEOUT_S) -> bool:
        """Write what is left (at shutdown); False when it could not within the time."""
        batch = self.take()
        if not batch:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await write(batch)
        except DB_ERRORS as exc:  # TimeoutError is an OSError
            lost = sum(t.bytes for t in batch.values())
            log.warning(
                "%d bytes of data usage not written at shutdown (%s)", lost, type(exc).__name__
            )
            self.dropped.inc(lost)
            return False
        return True


def usage_rows(
    batch: Mapping[UsageKey, Tally],
) -> Sequence[tuple[str, date, str, str, int, int]]:
    """A batch as rows (session, day, user, movie, bytes, edge bytes), in a stable order
    (so concurrent upserts from several processes lock rows in the same order)."""
    return sorted(
        (k.session_id, k.day, k.user_id, k.movie_id, t.bytes, t.edge_bytes)
        for k, t in batch.items()
    )
