"""Operator actions on a running proxy: PAUSE, RESUME, reload and SET.

PAUSE makes new checkouts wait and closes backends as their transactions
end, so the server can be restarted under a running application; RESUME
lets them go. `wait_released()` waits (bounded) until a paused pool has no
server connection left, so PAUSE returns only when a restart cuts nothing;
`wait_closed()` waits for the backends a reload retired (they close as their
clients let go of them). Both poll the pools' collections every WAIT_POLL
seconds: they run once per operator command, never per query.

A reload (SIGHUP, admin RELOAD) applies a new config without dropping a
client: users and passwords, pool sizes and timeouts change live; settings
in RESTART_KEYS keep their running values and are reported. `reload()`
returns every setting that changed, and whether it took effect. SET
(`set_setting()`) changes one setting that is not in RESTART_KEYS, checked
by config.set_setting() as a reload checks it, and applied by the same
Proxy.apply_config(); it lasts until the next reload, which reads the file
again, or restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sized
from typing import Any

from ..backend.connection import BackendConnection
from ..backend.pool import Pool
from ..config import ADMIN, ENV_SOURCE, SCHEMA, SECTIONS, Config, ConfigError, Origin, load_config, set_setting as _set
from ..events import EventKind, record
from ..proxy.proxy import Proxy

log = logging.getLogger("mysqlpool.proxy")

__all__ = ["pause", "resume", "reload", "reload_from_source", "pools_named", "set_setting", "changeable",
           "settable_keys", "settings", "wait_released", "wait_closed", "Change", "WaitTimeout", "RESTART_KEYS"]

WAIT_POLL = 0.05  # seconds between looks at the pools while PAUSE or WAIT_CLOSE waits

# Settings that only take effect at start.
RESTART_KEYS = (
    ("proxy", "listen"), ("proxy", "workers"), ("proxy", "tls_cert"), ("proxy", "tls_key"),
    ("proxy", "server_version"),  # (the greeting's version is learned once, with the server)
    ("admin", "listen"), ("metrics", "listen"), ("metrics", "path"), ("pool", "mode"),
    ("log", "level"), ("log", "format"),  # (logging is set up once, by the command line)
    ("proxy", "rsa_private_key"), ("proxy", "rsa_public_key"),  # (the key pair is made once, before workers fork)
)


class WaitTimeout(Exception):
    """A bounded wait ran out; the message says what is still there."""


def pools_named(proxy: Proxy, name: str | None) -> list[Pool]:
    if name is None:
        return list(proxy.pools.values())
    pool = proxy.pools.get(name)
    if pool is None:
        raise KeyError(f"no pool named {name!r}; pools: {', '.join(proxy.pools) or 'none'}")
    return [pool]


def pause(proxy: Proxy, name: str | None = None) -> list[str]:
    pools = pools_named(proxy, name)
    for pool in pools:
        pool.pause()
    return [p.name for p in pools]


def resume(proxy: Proxy, name: str | None = None) -> list[str]:
    pools = pools_named(proxy, name)
    for pool in pools:
        pool.resume()
    return [p.name for p in pools]


# -- waiting for server connections to go ------------------------------------------------------


async def wait_released(proxy: Proxy, pools: list[Pool], timeout: float) -> list[str]:
    """Until none of the paused `pools` has a server connection (idle, in use, opening or closing):
    a paused pool's backends close as their clients release them. Returns the names of the pools
    resumed meanwhile (which stops the wait). WaitTimeout after `timeout` seconds, naming what is
    still busy and which clients hold it (and why)."""
    def pending() -> list[Pool]:
        return [] if any(not p.paused for p in pools) else [p for p in pools if p.size]

    await _wait(proxy, timeout, pending, lambda: _describe_busy(proxy, pools))
    return [p.name for p in pools if not p.paused]


async def wait_closed(proxy: Proxy, pools: list[Pool], timeout: float) -> int:
    """Until the backends of `pools` that are due to close now (opened before a reload changed how
    backends connect, or closing) are closed; returns how many there were. WaitTimeout after
    `timeout` seconds, naming the ones left and who holds them."""
    due = {b for p in pools for b in (*p.idle, *p.busy, *p.closing) if b.closed or b.generation != p.generation}

    def left() -> list[BackendConnection]:
        there = {b for p in pools for b in (*p.idle, *p.busy, *p.closing)}
        return sorted(due & there, key=lambda b: b.id)

    await _wait(proxy, timeout, left, lambda: "; ".join(_describe_backend(proxy, b) for b in left()))
    return len(due)


async def _wait(proxy: Proxy, timeout: float, pending: Callable[[], Sized], describe: Callable[[], str]) -> None:
    deadline = proxy.loop.time() + timeout
    while pending():
        if proxy.loop.time() >= deadline:
            raise WaitTimeout(describe())
        await asyncio.sleep(WAIT_POLL)


def _describe_busy(proxy: Proxy, pools: list[Pool]) -> str:
    holders = _holders(proxy)
    parts = []
    for pool in pools:
        if not pool.size:
            continue
        counts = [f"{n} {what}" for n, what in ((len(pool.busy), "in use"), (len(pool.idle), "idle"),
                                                (pool.connecting, "connecting"), (len(pool.closing), "closing")) if n]
        held = [holders[b] for b in sorted(pool.busy, key=lambda b: b.id) if b in holders]
        parts.append(f"pool {pool.name}: {', '.join(counts)}" + (f" (held by {', '.join(held)})" if held else ""))
    return "; ".join(parts)


def _describe_backend(proxy: Proxy, backend: BackendConnection) -> str:
    held = _holders(proxy).get(backend)
    state = "closing" if backend.closed else backend.state.value
    return f"pool {backend.pool.name} backend #{backend.id} ({state}" + (f", held by {held})" if held else ")")


def _holders(proxy: Proxy) -> dict[BackendConnection, str]:
    """Backend -> "client #7 (transaction 3.2s)" for every client holding one."""
    now = proxy.loop.time()
    held = {}
    for client in proxy.clients.values():
        backend = client.backend
        if backend is None:
            continue
        reasons = [r.value for r in client.pinned_reasons()]
        if proxy.session_mode:
            reasons.append("session_mode")
        started = client.trx_started_at
        if client.in_transaction and started is not None and reasons and reasons[0] == "transaction":
            reasons[0] = f"transaction {now - started:.1f}s"
        held[backend] = f"client #{client.id}" + (f" ({', '.join(reasons)})" if reasons else "")
    return held


# -- configuration ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One setting a reload found changed."""

    key: str
    before: Any  # the running value before the reload (secrets masked)
    after: Any  # the new config's value (secrets masked)
    applied: bool  # False: it needs a restart, and the running value stays
    replaced_admin: bool = False  # the value before came from a console SET


def reload(proxy: Proxy, new: Config) -> list[Change]:
    """Apply a new config without dropping clients; returns every setting that changed."""
    old = proxy.config
    changes = _changes(old, new)
    proxy.apply_config(_keep_restart_only_settings(old, new))  # they stay as running until a restart
    needs_restart = [c.key for c in changes if not c.applied]
    log.info("configuration reloaded from %s (%d users, pools: %s)%s", new.source, len(new.users),
             ", ".join(f"{p.name} max {p.max_size}" for p in proxy.pools.values()),
             f"; restart needed for: {', '.join(needs_restart)}" if needs_restart else "")
    record(EventKind.RELOAD, f"configuration reloaded from {new.source}"
           + (f"; restart needed for: {', '.join(needs_restart)}" if needs_restart else ""))
    return changes


def reload_from_source(proxy: Proxy) -> list[Change]:
    """Re-read the config from where it came from (SIGHUP, admin RELOAD); ConfigError keeps the old one."""
    source = proxy.config.source
    try:
        new = load_config(None if source == ENV_SOURCE else source, overrides=proxy.config.overrides)
    except ConfigError as err:
        record(EventKind.RELOAD_FAILED, "reload refused, config unchanged: " + "; ".join(err.problems))
        raise
    return reload(proxy, new)


def changeable(key: str) -> bool:
    """Does a reload (and so SET) change `key` ("pool.max_size", "users[0].max_size") live?"""
    section, _, name = key.rpartition(".")
    return (section.split("[")[0], name) not in RESTART_KEYS


def settable_keys(config: Config) -> list[str]:
    """Every setting SET can change, in the order of the file (users as users[N].key)."""
    labels = [("users[N]" if section == "users" else section, section) for section in SECTIONS
              if section != "users" or config.users]
    return [f"{label}.{name}" for label, section in labels for name in SCHEMA[section]
            if changeable(f"{label}.{name}")]


def set_setting(proxy: Proxy, key: str, value: str, who: str) -> tuple[Config, Config]:
    """SET key = value: checked as a reload checks it, applied as a reload applies it.
    Returns (before, after). KeyError: no such setting, or one that needs a restart (the
    caller lists settable_keys()); ConfigError: the value is refused, nothing changed."""
    before = proxy.config
    if not changeable(key):
        raise KeyError(key)
    after = _set(before, key, value, Origin(ADMIN, who))
    proxy.apply_config(after)
    log.info("%s set %s: %s -> %s", who, key, _masked(before, key), _masked(after, key))
    return before, after


def settings(config: Config) -> dict[str, Any]:
    """"section.key" / "users[N].key" -> value, secrets masked, in the order of the file."""
    flat: dict[str, Any] = {}
    for section, values in config.redacted().items():
        tables = [(f"{section}[{i}]", t) for i, t in enumerate(values)] if isinstance(values, list) \
            else [(section, values)]
        for prefix, table in tables:
            flat.update((f"{prefix}.{key}", value) for key, value in table.items())
    return flat


def _masked(config: Config, key: str) -> Any:
    return settings(config)[key]


def _changes(old: Config, new: Config) -> list[Change]:
    before, after = settings(old), settings(new)
    changes = []
    for key in [*before, *(k for k in after if k not in before)]:
        if key in before and key in after and old.value(key) == new.value(key):
            continue
        changes.append(Change(key, before.get(key), after.get(key), changeable(key),
                              old.origin(key).kind == ADMIN))
    return changes


def _keep_restart_only_settings(running: Config, new: Config) -> Config:
    changed: dict[str, dict[str, object]] = {}
    for section, key in RESTART_KEYS:
        value = getattr(getattr(running, section), key)
        if getattr(getattr(new, section), key) != value:
            changed.setdefault(section, {})[key] = value
    for section, values in changed.items():
        new = dataclasses.replace(new, **{section: dataclasses.replace(getattr(new, section), **values)})
    return new
