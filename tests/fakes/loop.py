# The virtual clock: a real SelectorEventLoop whose time is virtual. When the
# loop would block, time jumps to the next timer instead, so
# `await asyncio.sleep(30)` returns at once with loop.time() 30 s later. Real
# readiness still counts (the loop's self-pipe, threads waking it), and a loop
# with nothing scheduled and no I/O fails the test instead of hanging.
#
# `run(coro)` runs a coroutine on a fresh loop and fails on any unhandled error
# a callback or task left; `@virtual_time` turns an `async def test_...` into a
# plain pytest test; from inside, `advance(s)` lets time pass and `settle()`
# drains the callbacks ready now. The loop's create_server is a stand-in, so
# Proxy.start() runs with no socket.
from __future__ import annotations

import asyncio
import functools
import selectors


class _VirtualSelector(selectors.BaseSelector):
    """Real readiness (the loop's self-pipe still works), virtual waiting."""

    def __init__(self, loop: VirtualClockLoop):
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj):
        return self._real.get_key(fileobj)

    def get_map(self):
        return self._real.get_map()

    def close(self):
        self._real.close()

    def select(self, timeout=None):
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            # Nothing scheduled: only a thread could still wake the loop.
            events = self._real.select(self._loop.real_wait)
            if not events:
                raise RuntimeError("VirtualClockLoop: nothing is scheduled and no I/O is pending; "
                                   "the test would wait forever")
            return events
        self._loop._jump(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time() only moves when the loop would otherwise wait."""

    def __init__(self, start: float = 1000.0, limit: float = 30 * 86400.0, real_wait: float = 2.0):
        self._now = float(start)
        self._limit = self._now + limit
        self.real_wait = real_wait
        super().__init__(selector=_VirtualSelector(self))
        self.errors: list[dict] = []
        self._settling: set = set()
        self.set_exception_handler(self._record_error)

    def time(self) -> float:
        return self._now

    def _jump(self, timeout: float) -> None:
        target = self._now + timeout
        if self._scheduled:
            when = self._scheduled[0].when()
            if abs(when - target) < 1e-6:
                target = when  # land exactly on the timer, not an ulp before it
        self._now = max(self._now, target)
        if self._now > self._limit:
            raise RuntimeError(f"VirtualClockLoop: virtual time passed its limit ({self._now:.0f}); "
                               "something waits forever")

    def _record_error(self, loop, context: dict) -> None:
        self.errors.append(context)
        loop.default_exception_handler(context)

    async def create_server(self, protocol_factory, *args, **kwargs):
        """No socket: a stand-in server, so Proxy.start() runs unchanged."""
        return _FakeListener(protocol_factory)

    async def create_unix_server(self, protocol_factory, *args, **kwargs):
        return _FakeListener(protocol_factory)

    async def settle(self, limit: int = 100_000) -> None:
        """Yield until no callback is ready at the current time (but other settling tasks' own steps)."""
        me = asyncio.current_task()
        self._settling.add(me)
        try:
            for _ in range(limit):
                await asyncio.sleep(0)
                if all(getattr(h._callback, "__self__", None) in self._settling for h in self._ready):
                    return
            raise RuntimeError("settle(): callbacks keep scheduling callbacks")
        finally:
            self._settling.discard(me)

    async def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, running every timer due meanwhile."""
        await asyncio.sleep(seconds)
        await self.settle()


class _FakeListener:
    def __init__(self, protocol_factory):
        self.protocol_factory = protocol_factory
        self.sockets: list = []
        self._serving = True

    def close(self) -> None:
        self._serving = False

    def is_serving(self) -> bool:
        return self._serving

    async def wait_closed(self) -> None:
        return None


def _running() -> VirtualClockLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualClockLoop):
        raise RuntimeError("not running on a VirtualClockLoop")
    return loop


async def advance(seconds: float) -> None:
    await _running().advance(seconds)


async def settle() -> None:
    await _running().settle()


def run(coro, *, start: float = 1000.0, strict: bool = True):
    """Run `coro` on a new VirtualClockLoop; fail if any callback or task raised unhandled."""
    loop = VirtualClockLoop(start=start)
    asyncio.set_event_loop(loop)
    try:
        result = loop.run_until_complete(coro)
        loop.run_until_complete(loop.settle())
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    if strict and loop.errors:
        raise AssertionError("unhandled errors on the event loop: "
                             + "; ".join(str(c.get("exception") or c.get("message")) for c in loop.errors))
    return result


def virtual_time(fn):
    """Decorator: an `async def test_...` run by run() (other fixtures still work)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run(fn(*args, **kwargs))

    return wrapper
