# Waiting in tests: a test never sleeps a fixed time to let something happen;
# it waits for the thing itself. wait_until(predicate, timeout, what) polls
# the predicate until it returns something true (and returns that), and
# fails with an AssertionError naming what it waited for once `timeout`
# seconds have passed. wait_until_async does the same inside an event loop
# (the loop runs while it waits). `what` may be a function, called only on
# failure (to show, say, a process's output so far); exceptions listed in
# `ignoring` count as "not yet" (a port that refuses until the server is up).
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

Description = str | Callable[[], str]


def wait_until(predicate: Callable[[], Any], timeout: float, what: Description, interval: float = 0.02, *,
               ignoring: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll `predicate` until it returns something true (returned); AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(timeout, what, last_error))
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], Any], timeout: float, what: Description,
                           interval: float = 0.02) -> Any:
    """wait_until() for a test running on an event loop: the loop goes on between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(timeout, what, None))
        await asyncio.sleep(interval)


def _failure(timeout: float, what: Description, last_error: BaseException | None) -> str:
    text = what() if callable(what) else what
    return f"not within {timeout:g}s: {text}" + (f" (last: {last_error!r})" if last_error is not None else "")
