"""Clients waiting for a backend, logged as episodes, never per checkout.

A pool at its cap queues clients for a few milliseconds all the time: that
is pooling working, not news. What an operator wants to hear about is
clients waiting long, so the log speaks of *episodes*:

* one starts when a client has waited `threshold` seconds (served, timed
  out, or still in the queue). The threshold is SLOW_WAIT (1 s: a wait a
  user notices, far above the milliseconds of normal queueing), or a quarter
  of checkout_timeout if that is shorter, so the line comes before clients
  time out; the janitor passes it in;
* it ends when no client has waited that long for CALM seconds.

Its start is one warning (how many wait, the longest wait, why: all backends
in use, connects failing, paused); its end is one info line with how many
clients waited during it, the longest wait, how many timed out and how many
were refused while waiting (the server down: refusals.py tells them).

Rate limit: at most one episode is logged per INTERVAL. A pool flapping at
its cap starts more; those are not logged one by one but summed, and the sum
is written before the next logged start, or on its own once INTERVAL has
passed with the pool calm.

How it works: the pool reports each queued wait as it ends (`served`,
`timed_out`, `refused`: a few additions, on the waiting path only; a
checkout that finds an idle backend never comes here). The janitor calls `check()` at each tick
(at most a second apart) with the pool: episodes start and end there, from
what was reported since the last tick and the oldest client still queued.
`take_longest()` gives the stats line its longest wait since it last asked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Protocol

from ..events import EventKind, record
from ..logs import log_event

__all__ = ["WaitWatch", "SLOW_WAIT", "CALM", "INTERVAL", "slow_wait_threshold", "oldest_wait"]

log = logging.getLogger("mysqlpool.pool")


class QueuedClient(Protocol):
    @property
    def done(self) -> bool: ...

    @property
    def enqueued_at(self) -> float: ...


class Pool(Protocol):
    """What is read of a pool (pool.py's Pool; declared here, as pool.py imports this module)."""

    @property
    def name(self) -> str: ...

    @property
    def waiters(self) -> Sequence[QueuedClient]: ...

    @property
    def busy(self) -> Sized: ...

    @property
    def size(self) -> int: ...

    @property
    def max_size(self) -> int: ...

    @property
    def paused(self) -> bool: ...

    @property
    def failing(self) -> bool: ...

SLOW_WAIT = 1.0  # seconds: a wait worth a line
CALM = 1.0  # seconds without a slow wait that end an episode
INTERVAL = 60.0  # seconds: at most one episode logged per interval


def slow_wait_threshold(checkout_timeout: float) -> float:
    """SLOW_WAIT, or a quarter of checkout_timeout when that is shorter (the line comes before timeouts)."""
    return min(SLOW_WAIT, checkout_timeout / 4)


@dataclass(slots=True)
class Tally:
    """Waits over some stretch of time (an episode, a tick, the episodes not logged)."""
    waited: int = 0
    longest: float = 0.0
    timed_out: int = 0
    refused: int = 0
    episodes: int = 0

    def add(self, other: Tally) -> None:
        self.waited += other.waited
        self.longest = max(self.longest, other.longest)
        self.timed_out += other.timed_out
        self.refused += other.refused
        self.episodes += other.episodes

    def describe(self) -> str:
        text = f"{self.waited} waited, the longest {self.longest:.2f}s, {self.timed_out} timed out"
        return text + (f", {self.refused} refused (no backend could be had)" if self.refused else "")


class WaitWatch:
    """One pool's waits: episodes of slow waits for the log, the longest wait for the stats line."""

    __slots__ = ("timeouts", "_tick", "_longest", "_episode", "_started", "_logged", "_last_slow", "_last_logged",
                 "_unlogged", "_unlogged_since")

    def __init__(self) -> None:
        self.timeouts = 0  # clients that got CheckoutTimeout, ever
        self._tick = Tally()  # waits ended since the last check()
        self._longest = 0.0  # since the last take_longest()
        self._episode: Tally | None = None
        self._started = 0.0
        self._logged = False  # the current episode's start was logged
        self._last_slow = float("-inf")
        self._last_logged = float("-inf")  # when an episode (or a summary) was last logged
        self._unlogged = Tally()  # episodes not logged one by one
        self._unlogged_since = 0.0

    # -- reported by the pool ----------------------------------------------------------------

    def served(self, waited: float) -> None:
        """A queued client got its backend after `waited` seconds."""
        tick = self._tick
        tick.waited += 1
        if waited > tick.longest:
            tick.longest = waited
        if waited > self._longest:
            self._longest = waited

    def timed_out(self, waited: float) -> None:
        """A queued client got CheckoutTimeout after `waited` seconds."""
        self.served(waited)
        self._tick.timed_out += 1
        self.timeouts += 1

    def refused(self, waited: float) -> None:
        """A queued client was told, after `waited` seconds, that no backend can be had (the server is down)."""
        self.served(waited)
        self._tick.refused += 1

    def take_longest(self) -> float:
        """The longest wait since the last call."""
        longest, self._longest = self._longest, 0.0
        return longest

    # -- the janitor's check -----------------------------------------------------------------

    def check(self, pool: Pool, now: float, threshold: float) -> None:
        """Start or end an episode, and write what the rate limit allows (see the module comment)."""
        tick, self._tick = self._tick, Tally()
        tick.longest = max(tick.longest, oldest_wait(pool, now))  # clients still waiting count too
        slow = bool(tick.timed_out) or tick.longest >= threshold
        if slow:
            self._last_slow = now
        if self._episode is not None:
            self._episode.add(tick)
            if now - self._last_slow >= CALM:
                self._end(pool, now)
        elif slow:
            self._start(pool, now, tick, threshold)
        if self._episode is None and self._unlogged.episodes and now - self._last_logged >= INTERVAL:
            self._write_unlogged(pool, now, threshold)
            self._last_logged = now

    def _start(self, pool: Pool, now: float, tick: Tally, threshold: float) -> None:
        self._episode = tick
        tick.episodes = 1
        self._started = now
        self._logged = now - self._last_logged >= INTERVAL
        if not self._logged:
            if not self._unlogged.episodes:
                self._unlogged_since = now
            return
        if self._unlogged.episodes:
            self._write_unlogged(pool, now, threshold)
        self._last_logged = now
        cause = _cause(pool)
        log_event(log, "warning", f"pool {pool.name}: clients wait longer than {threshold:g}s for a backend "
                  f"({_CAUSES[cause].format(pool=pool)})", pool=pool.name, cause=cause,
                  waiting=len(pool.waiters), longest_wait_s=round(tick.longest, 3),
                  in_use=len(pool.busy), max_size=pool.max_size, threshold_s=threshold)
        record(EventKind.POOL_EXHAUSTED, f"clients wait longer than {threshold:g}s for a backend "
               f"({_CAUSES[cause].format(pool=pool)})", pool.name)

    def _end(self, pool: Pool, now: float) -> None:
        episode, self._episode = self._episode, None
        assert episode is not None
        if not self._logged:
            self._unlogged.add(episode)
            return
        log_event(log, "info", f"pool {pool.name}: clients no longer wait long for a backend, after "
                  f"{now - self._started:.1f}s: {episode.describe()}", pool=pool.name,
                  duration_s=round(now - self._started, 3), waited=episode.waited,
                  longest_wait_s=round(episode.longest, 3), timed_out=episode.timed_out, refused=episode.refused)
        record(EventKind.POOL_RECOVERED, f"clients no longer wait long: {episode.describe()}", pool.name)

    def _write_unlogged(self, pool: Pool, now: float, threshold: float) -> None:
        t, self._unlogged = self._unlogged, Tally()
        log_event(log, "warning", f"pool {pool.name}: {t.episodes} more time{'s' if t.episodes > 1 else ''} clients "
                  f"waited longer than {threshold:g}s for a backend in the last {now - self._unlogged_since:.0f}s "
                  f"(not logged one by one): {t.describe()}", pool=pool.name, episodes=t.episodes, waited=t.waited,
                  longest_wait_s=round(t.longest, 3), timed_out=t.timed_out, refused=t.refused,
                  threshold_s=threshold)


_CAUSES = {
    "paused": "the pool is paused",
    "connect_failing": "new connections to the server fail",
    "at_cap": "all backends in use, max_size {pool.max_size}",
    "opening": "backends are being opened",
}


def _cause(pool: Pool) -> str:
    if pool.paused:
        return "paused"
    if pool.failing:
        return "connect_failing"
    if pool.size >= pool.max_size:
        return "at_cap"
    return "opening"


def oldest_wait(pool: Pool, now: float) -> float:
    """How long the first client still in the queue has waited (0 if none)."""
    for waiter in pool.waiters:
        if not waiter.done:
            return now - waiter.enqueued_at
    return 0.0
