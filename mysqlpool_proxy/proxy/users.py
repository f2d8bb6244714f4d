"""The proxy's users and the pools of their backend accounts, built from a config: at start and at reload.

Proxy users that map to the same backend account share one pool; its cap is
the largest any of them asks for. `build_users` is the one function that
builds the table: for a reload it reconfigures the pools that stay, opens
the new ones, and winds down the ones no user maps to any more (their
clients finish, nobody new arrives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..backend.pool import Pool
from ..config import Config, UserConfig
from ..protocol import auth

__all__ = ["UserEntry", "build_users", "credentials_of"]


@dataclass(slots=True)
class UserEntry:
    name: str
    config: UserConfig
    credentials: auth.Credentials
    pool: Pool


def credentials_of(user: UserConfig) -> auth.Credentials:
    allowed = tuple(p.encode() for p in user.auth_plugins)
    if user.password is not None:
        return auth.credentials_from_password(user.password, allowed)
    assert user.password_hash is not None
    return auth.credentials_from_native_hash(user.password_hash, allowed)


def build_users(config: Config, pools: dict[str, Pool], open_pool: Callable[[str, UserConfig, int], Pool],
                reconfigure: Callable[[Pool, UserConfig | None, int], None]) -> dict[bytes, UserEntry]:
    """The user table for `config`; `pools` (by backend account) is updated in place: a new account gets
    `open_pool(account, user, max_size)`, an existing one `reconfigure(pool, user, max_size)`, and one no
    user maps to any more `reconfigure(pool, None, 0)`."""
    sizes: dict[str, int] = {}
    for user in config.users:
        account = user.backend_user or user.name
        sizes[account] = max(sizes.get(account, 0), config.pool_max_size(user))
    users: dict[bytes, UserEntry] = {}
    configured: set[str] = set()
    for user in config.users:
        account = user.backend_user or user.name
        pool = pools.get(account)
        if pool is None:
            pool = pools[account] = open_pool(account, user, sizes[account])
        elif account not in configured:
            reconfigure(pool, user, sizes[account])
        configured.add(account)
        users[user.name.encode()] = UserEntry(user.name, user, credentials_of(user), pool)
    for account, pool in pools.items():
        if account not in sizes:
            reconfigure(pool, None, 0)
    return users
