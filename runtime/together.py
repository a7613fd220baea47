"""Independent awaits run at once, with the outcome of running them one after another.

A request that needs two independent reads (a film and an account, say) waits for the
slower one instead of for both in turn. What stays as it was: the error raised when
more than one fails is the one the sequence raised first, and nothing is left running
when the call returns or raises. Only for reads and other work without side effects:
the later awaitables run even when an earlier one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results; when either fails, ``first``'s error if it failed, else ``second``'s
    (each is awaited to its end before anything is raised)."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b
