"""Waiting for a condition instead of for a fixed time: :func:`eventually`.

A test that must wait for something asynchronous (a worker's rows, a metrics refresh, a breaker
opening) polls for the condition itself, so it is as fast as the system allows and, when the
condition never comes, says what it waited for and what it saw last.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["eventually"]

T = TypeVar("T")

MAX_SHOWN = 3000  # characters of the last value a failure shows


@overload
async def eventually(check: Callable[[], Awaitable[T | None]], what: str, *,
                     timeout: float = ..., interval: float = ...,
                     ignoring: tuple[type[Exception], ...] = ...,
                     detail: Callable[[], object] | None = ...) -> T: ...


@overload
async def eventually(check: Callable[[], T | None], what: str, *,
                     timeout: float = ..., interval: float = ...,
                     ignoring: tuple[type[Exception], ...] = ...,
                     detail: Callable[[], object] | None = ...) -> T: ...


async def eventually(check: Callable[[], Any], what: str, *,
                     timeout: float = 10.0, interval: float = 0.1,
                     ignoring: tuple[type[Exception], ...] = (),
                     detail: Callable[[], object] | None = None) -> Any:
    """Call ``check`` (plain or async) every ``interval`` s until it returns a truthy value, and
    return that value.

    After ``timeout`` s raises ``AssertionError`` naming ``what`` was awaited, the last value
    ``check`` returned (or the last exception of ``ignoring`` it raised) and, when given,
    ``detail()`` (say, the end of a worker's log). Any other exception of ``check`` propagates
    at once: a check stops the wait early by failing an assertion (a worker that died).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except ignoring as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if loop.time() >= deadline:
            seen = repr(last)
            if len(seen) > MAX_SHOWN:
                seen = seen[:MAX_SHOWN] + f"... ({len(seen)} chars)"
            message = f"timed out after {timeout:g} s waiting for {what}; last seen: {seen}"
            if detail is not None:
                message += f"\n{detail()}"
            raise AssertionError(message)
        await asyncio.sleep(interval)
