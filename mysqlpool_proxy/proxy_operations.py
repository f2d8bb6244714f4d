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
from typing import TYPE_CHECKING

from .backend_adapter import make_ssl_context
from .config import ENV_SOURCE, Config, UserConfig, load_config
from .protocol import auth
from .workers import share

if TYPE_CHECKING:
    from .pool import Pool

log = logging.getLogger("mysqlpool.proxy")

__all__ = ["OperationsMixin", "ssl_settings", "credentials_of"]


class OperationsMixin:
    """Methods of Proxy."""

    def pools_named(self, name: str | None) -> list[Pool]:
        if name is None:
            return list(self.pools.values())
        pool = self.pools.get(name)
        if pool is None:
            raise KeyError(f"no pool named {name!r}; pools: {', '.join(self.pools) or 'none'}")
        return [pool]

    def pause(self, name: str | None = None) -> list[str]:
        pools = self.pools_named(name)
        for pool in pools:
            pool.pause()
        return [p.name for p in pools]

    def resume(self, name: str | None = None) -> list[str]:
        pools = self.pools_named(name)
        for pool in pools:
            pool.resume()
        return [p.name for p in pools]

    def reload(self, new: Config) -> list[str]:
        """Apply a new config without dropping clients; returns what could not change live."""
        old = self.config
        needs_restart = [f"{section}.{key}" for section, key in _RESTART_KEYS
                         if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)]
        new = _keep_restart_only_settings(old, new)  # they stay as running until a restart
        self.config = new
        self.limiter.max = self.share(new.backend.max_connections)
        if ssl_settings(old) != ssl_settings(new):
            self._backend_ssl = make_ssl_context(*ssl_settings(new))
        self._reload_users(new)
        self.limiter.released()
        log.info("configuration reloaded from %s (%d users, pools: %s)%s", new.source, len(new.users),
                 ", ".join(f"{p.name} max {p.max_size}" for p in self.pools.values()),
                 f"; restart needed for: {', '.join(needs_restart)}" if needs_restart else "")
        return needs_restart

    def reload_from_source(self) -> list[str]:
        """Re-read the config from where it came from (SIGHUP, admin RELOAD); ConfigError keeps the old one."""
        source = self.config.source
        new = load_config(None if source == ENV_SOURCE else source, overrides=self.config.overrides)
        return self.reload(new)

    def _reload_users(self, new: Config) -> None:
        from .proxy import UserEntry  # (proxy imports this module)
        sizes: dict[str, int] = {}
        for user in new.users:
            backend_user = user.backend_user or user.name
            sizes[backend_user] = max(sizes.get(backend_user, 0), new.pool_max_size(user))
        users: dict[bytes, UserEntry] = {}
        p = new.pool
        for user in new.users:
            backend_user = user.backend_user or user.name
            pool = self.pools.get(backend_user)
            if pool is None:
                pool = self.pools[backend_user] = self._make_pool(backend_user, user, sizes[backend_user])
            else:
                pool.reconfigure(self._params(user), max_size=self.share(sizes[backend_user]),
                                 min_idle=share(p.min_idle, self.worker.index, self.worker.count)
                                 if self.worker else p.min_idle,
                                 max_lifetime=p.max_lifetime, max_waiting=p.max_waiting_clients,
                                 max_connecting=p.max_connecting)
                pool.statement_cache_size = self.statement_cache_size()
            users[user.name.encode()] = UserEntry(user.name, user, credentials_of(user), pool)
        for name, pool in self.pools.items():
            if name not in sizes:
                # No user maps to it any more: its clients finish, nobody new arrives.
                pool.reconfigure(pool.params, max_size=pool.configured_max_size, min_idle=0,
                                 max_lifetime=p.max_lifetime, max_waiting=pool.max_waiting,
                                 max_connecting=pool.max_connecting)
        self.users = users
        self._known_schemas.clear()


# Settings that only take effect at start.
_RESTART_KEYS = (
    ("proxy", "listen"), ("proxy", "workers"), ("proxy", "tls_cert"), ("proxy", "tls_key"),
    ("admin", "listen"), ("metrics", "listen"), ("metrics", "path"), ("pool", "mode"),
)


def _keep_restart_only_settings(running: Config, new: Config) -> Config:
    changed = {}
    for section, key in _RESTART_KEYS:
        value = getattr(getattr(running, section), key)
        if getattr(getattr(new, section), key) != value:
            changed.setdefault(section, {})[key] = value
    for section, values in changed.items():
        new = dataclasses.replace(new, **{section: dataclasses.replace(getattr(new, section), **values)})
    return new

def ssl_settings(config: Config) -> tuple[str, str, str, str]:
    b = config.backend
    return b.ssl_mode, b.ssl_ca, b.ssl_cert, b.ssl_key


def credentials_of(user: UserConfig) -> auth.Credentials:
    if user.password is not None:
        return auth.credentials_from_password(user.password)
    return auth.credentials_from_native_hash(user.password_hash)
