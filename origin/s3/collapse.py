"""Request collapsing: concurrent full GETs of one object share a single origin fetch.

The first reader of a key starts a fetch task; later readers join it and stream the
same chunks at their own pace. A shared fetch holds its whole object until its last
reader is done, so what all of them hold at once is bounded by a `FetchBudget`
(``KUSH_SHARED_FETCH_BUFFER_BYTES``): an object the budget cannot cover, or one larger
than ``max_size``, is not held — the fetch publishes the answer (not shared) and each
reader streams from the origin on its own, with backpressure. The last reader to leave
stops a fetch nobody wants any more and gives its bytes back to the budget.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import hdrs

from origin.errors import ObjectNotFound, OriginError, OriginUnavailable
from origin.s3.upstream import CHUNK_SIZE, Answer, StreamBroken, Upstream, read_answer

__all__ = ["FetchBudget", "FetchCollapser", "SharedFetch"]

log = logging.getLogger(__name__)


class FetchBudget:
    """The bytes the shared fetches of one store may hold between them.

    A fetch takes its object's size when the origin answers and gives it back when its
    last reader is done, however slowly that reader reads (a reader that stops reading
    altogether is dropped by the server's write timeout). Once an object did not fit,
    new requests do not start shared fetches until as much is free again, so a full
    budget does not cost each request a wasted origin GET.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self.used = 0
        self._refused = 0  # the size of the last object that did not fit

    @property
    def free(self) -> int:
        """Bytes not taken."""
        return self.capacity - self.used

    def may_fit(self) -> bool:
        """Whether starting a shared fetch is worth it (room for the last refused size)."""
        return self.free >= max(1, self._refused)

    def take(self, size: int) -> bool:
        """Take ``size`` bytes if they are free; False (and nothing taken) otherwise."""
        if size > self.free:
            self._refused = min(size, self.capacity)
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        """Return bytes taken with :meth:`take`."""
        self.used -= size


@dataclass(eq=False, slots=True)
class SharedFetch:
    """One in-flight full GET of an object, streamed to every request that wants it.

    The fetch task appends chunks; each reader walks the chunk list at its own pace and
    waits for ``_changed`` when it has caught up. Nothing is kept once the fetch ends
    and the last reader is done; ``held`` is what the fetch took from the budget.
    """

    key: str
    answer: Answer | None = None
    error: OriginError | None = None
    chunks: list[bytes] = field(default_factory=list)
    done: bool = False
    broken: bool = False
    readers: int = 0
    held: int = 0
    task: asyncio.Task[None] | None = None
    head_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def publish(self, answer: Answer) -> None:
        """The origin answered 200: readers may start their responses."""
        self.answer = answer
        self.head_ready.set()

    def append(self, chunk: bytes) -> None:
        """One more chunk of the body."""
        self.chunks.append(chunk)
        self._notify()

    def fail(self, error: OriginError) -> None:
        """The fetch failed: before the headers, readers raise; after, streams break."""
        if not self.head_ready.is_set():
            self.error = error
            self.head_ready.set()
        else:
            self.broken = True
        self.finish()

    def finish(self) -> None:
        """No more chunks will come."""
        if not self.head_ready.is_set():
            self.error = OriginError(f"origin fetch of {self.key} ended without an answer")
            self.head_ready.set()
        if not self.done:
            self.done = True
            self._notify()

    async def chunk_at(self, index: int) -> bytes:
        """The chunk at ``index``, waiting for it; ``b""`` at the end of the object."""
        while True:
            if index < len(self.chunks):
                return self.chunks[index]
            if self.done:
                if self.broken:
                    raise StreamBroken(self.key)
                return b""
            await self._changed.wait()


def _like(error: OriginError) -> OriginError:
    """A fresh copy of a shared fetch's error, so each request raises its own."""
    if isinstance(error, ObjectNotFound):
        return ObjectNotFound(error.key)
    if isinstance(error, OriginUnavailable):
        return OriginUnavailable(error.retry_after, str(error))
    return OriginError(str(error))


class FetchCollapser:
    """The in-flight fetches of one store, by key."""

    def __init__(self, upstream: Upstream, *, max_size: int, budget: FetchBudget) -> None:
        self._upstream = upstream
        self._max_size = min(max_size, budget.capacity)
        self._budget = budget
        self._inflight: dict[str, SharedFetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references

    def in_flight(self, key: str) -> bool:
        """Whether a fetch of ``key`` is running (a reader joining it costs nothing)."""
        return key in self._inflight

    @property
    def buffered(self) -> int:
        """Bytes the shared fetches hold now (at most the budget's capacity)."""
        return self._budget.used

    def join(self, key: str) -> SharedFetch | None:
        """Join the in-flight fetch of ``key``, or start one; pair with :meth:`leave`.

        None when the budget is spent: the caller streams the object on its own.
        """
        fetch = self._inflight.get(key)
        if fetch is None:
            if not self._budget.may_fit():
                self._upstream.stats.unshared += 1
                return None
            fetch = SharedFetch(key)
            self._inflight[key] = fetch
            fetch.task = asyncio.create_task(self._fetch(fetch), name=f"origin-fetch:{key}")
            self._tasks.add(fetch.task)
            fetch.task.add_done_callback(self._tasks.discard)
        else:
            self._upstream.stats.collapsed += 1
        fetch.readers += 1
        return fetch

    def leave(self, fetch: SharedFetch) -> None:
        """A reader is done; the last one out stops a fetch nobody wants any more (or,
        if it has ended, gives its bytes back)."""
        fetch.readers -= 1
        if fetch.readers > 0:
            return
        if fetch.task is not None and not fetch.task.done():
            self._forget(fetch)
            fetch.task.cancel()  # the task's end gives the bytes back
        else:
            self._release(fetch)

    def _release(self, fetch: SharedFetch) -> None:
        """Give a finished fetch's bytes back once no reader needs them."""
        if fetch.readers == 0 and fetch.held:
            self._budget.give_back(fetch.held)
            fetch.held = 0
            fetch.chunks.clear()

    def _forget(self, fetch: SharedFetch) -> None:
        if self._inflight.get(fetch.key) is fetch:
            del self._inflight[fetch.key]

    async def wait_answer(self, fetch: SharedFetch) -> Answer:
        """The origin's answer, or the fetch's error raised afresh for this reader."""
        await fetch.head_ready.wait()
        if fetch.error is not None:
            raise _like(fetch.error) from fetch.error
        assert fetch.answer is not None
        return fetch.answer

    async def _fetch(self, fetch: SharedFetch) -> None:
        """The shared fetch task: one GET whose chunks every reader streams."""
        upstream = self._upstream
        key = fetch.key
        try:
            async with upstream.request(hdrs.METH_GET, "get_object", key, {}) as response:
                if response.status != 200:
                    await upstream.raise_for_status(response, "get_object", key)
                size = response.content_length
                shared = size is not None and size <= self._max_size
                if shared and size is not None:
                    shared = self._budget.take(size)
                    if shared:
                        fetch.held = size
                    else:
                        upstream.stats.unshared += 1
                fetch.publish(read_answer(key, response, shared=shared))
                if not shared:
                    return  # too big to hold in memory now: each reader streams it alone
                try:
                    while chunk := await upstream.read_body(response, key, CHUNK_SIZE):
                        fetch.append(chunk)
                except StreamBroken:
                    fetch.fail(OriginUnavailable(upstream.retry_after(), "origin stream broke"))
        except OriginError as err:
            fetch.fail(err)
        except asyncio.CancelledError:
            fetch.fail(OriginError("origin fetch cancelled"))
            raise
        except Exception as err:
            log.exception("origin fetch of %s failed", key)
            fetch.fail(OriginError(f"origin fetch failed: {type(err).__name__}"))
        finally:
            fetch.finish()
            self._forget(fetch)
            self._release(fetch)

    async def close(self) -> None:
        """Stop every in-flight fetch and wait for the tasks to end."""
        tasks = list(self._tasks)
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
