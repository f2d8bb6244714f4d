"""Operator actions on a running proxy: PAUSE, RESUME and reload.

PAUSE makes new checkouts wait and closes backends as their transactions
end, so the server can be restarted under a running application; RESUME
lets them go. A reload (SIGHUP, admin RELOAD) applies a new config without
dropping a client: users and passwords, pool sizes and timeouts change
live; settings that need a restart keep their running values (and are
reported).
"""

from __future__ import annotations

import dataclasses
import logging

from ..backend.pool import Pool
from ..config import ENV_SOURCE, Config, ConfigError, load_config
from ..events import EventKind, record
from ..proxy.proxy import Proxy

log = logging.getLogger("mysqlpool.proxy")

__all__ = ["pause", "resume", "reload", "reload_from_source", "pools_named"]


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


def reload(proxy: Proxy, new: Config) -> list[str]:
    """Apply a new config without dropping clients; returns what could not change live."""
    old = proxy.config
    needs_restart = [f"{section}.{key}" for section, key in _RESTART_KEYS
                     if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)]
    proxy.apply_config(_keep_restart_only_settings(old, new))  # they stay as running until a restart
    log.info("configuration reloaded from %s (%d users, pools: %s)%s", new.source, len(new.users),
             ", ".join(f"{p.name} max {p.max_size}" for p in proxy.pools.values()),
             f"; restart needed for: {', '.join(needs_restart)}" if needs_restart else "")
    record(EventKind.RELOAD, f"configuration reloaded from {new.source}"
           + (f"; restart needed for: {', '.join(needs_restart)}" if needs_restart else ""))
    return needs_restart


def reload_from_source(proxy: Proxy) -> list[str]:
    """Re-read the config from where it came from (SIGHUP, admin RELOAD); ConfigError keeps the old one."""
    source = proxy.config.source
    try:
        new = load_config(None if source == ENV_SOURCE else source, overrides=proxy.config.overrides)
    except ConfigError as err:
        record(EventKind.RELOAD_FAILED, "reload refused, config unchanged: " + "; ".join(err.problems))
        raise
    return reload(proxy, new)


# Settings that only take effect at start.
_RESTART_KEYS = (
    ("proxy", "listen"), ("proxy", "workers"), ("proxy", "tls_cert"), ("proxy", "tls_key"),
    ("admin", "listen"), ("metrics", "listen"), ("metrics", "path"), ("pool", "mode"),
)


def _keep_restart_only_settings(running: Config, new: Config) -> Config:
    changed: dict[str, dict[str, object]] = {}
    for section, key in _RESTART_KEYS:
        value = getattr(getattr(running, section), key)
        if getattr(getattr(new, section), key) != value:
            changed.setdefault(section, {})[key] = value
    for section, values in changed.items():
        new = dataclasses.replace(new, **{section: dataclasses.replace(getattr(new, section), **values)})
    return new
