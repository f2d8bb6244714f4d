# Runs a real mysqlpool-proxy for tests: its own event loop (uvloop, as in
# production, or the stock asyncio loop with uvloop=False) on a background
# thread, so blocking drivers (PyMySQL, MySQLdb, mysql-connector) can talk
# to it from the test thread, and tests can read the proxy's state through
# `call()`, which runs a function on the proxy's loop and returns its result. The config goes through a real TOML
# file and load_config, exactly as the CLI would read it.
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from mysqlpool_proxy.config import load_config
from mysqlpool_proxy.ops.services import Services, start_services
from mysqlpool_proxy.proxy.proxy import Proxy

APP_USER = "app"
APP_PASSWORD = "app-secret"
APP_DB = "appdb"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        raise ValueError("None cannot be written to TOML; leave the key out")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(server, *, users: list[dict] | None = None, **sections: dict) -> str:
    """TOML for a proxy in front of `server`; sections override the defaults."""
    base = {
        "proxy": {"listen": "127.0.0.1:0"},
        "backend": {"host": server.host, "port": server.port},
        "pool": {"max_size": 5},
        "admin": {"listen": ""},
        "metrics": {"listen": ""},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    for user in users or [{"name": APP_USER, "password": APP_PASSWORD}]:
        lines.append("[[users]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in user.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


class ProxyThread:
    """A started proxy on its own loop thread. Use as a context manager or call stop()."""

    def __init__(self, config_path: Path, *, uvloop: bool = True):
        self.config = load_config(str(config_path))
        self.uvloop = uvloop
        self.loop = asyncio.new_event_loop()
        self.proxy: Proxy | None = None
        self.services: Services | None = None
        self._thread = threading.Thread(target=self._run, name="mysqlpool-proxy", daemon=True)
        self._ready = concurrent.futures.Future()

    def _run(self) -> None:
        try:
            if self.uvloop:
                import uvloop
                self.loop = uvloop.new_event_loop()
        except ImportError:
            pass
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _start(self) -> None:
        try:
            self.proxy = Proxy(self.config, asyncio.get_running_loop())
            self.services = await start_services(self.proxy)
            await self.proxy.start()
            self.services.start_janitor(self.proxy)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)

    def start(self, wait_for_server: bool = True) -> ProxyThread:
        self._thread.start()
        self._ready.result(timeout=30)
        if wait_for_server:
            self.call_async(lambda: asyncio.wait_for(self.proxy.server_known.wait(), 30))
        return self

    @property
    def port(self) -> int:
        return self.proxy.listen_port

    host = "127.0.0.1"

    def call(self, fn: Callable, *args, timeout: float = 30) -> Any:
        """Run fn(*args) on the proxy's loop and return its result."""
        fut = concurrent.futures.Future()

        def run():
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def call_async(self, coro_fn: Callable, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    async def _stop(self, timeout: float) -> None:
        await self.proxy.stop(timeout)
        if self.services is not None:
            await self.services.stop()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call_async(lambda: self._stop(timeout), timeout=timeout + 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)

    def __enter__(self) -> ProxyThread:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- conveniences ---------------------------------------------------------------

    def connect(self, user: str = APP_USER, password: str = APP_PASSWORD, database: str | None = APP_DB,
                **kwargs) -> pymysql.connections.Connection:
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, database=database,
                               **kwargs)

    def url(self, scheme: str = "mysql+pymysql", user: str = APP_USER, password: str = APP_PASSWORD,
            database: str = APP_DB) -> str:
        return f"{scheme}://{user}:{password}@{self.host}:{self.port}/{database}"

    def pool_stats(self, name: str = APP_USER) -> dict:
        def read():
            pool = self.proxy.pools[name]
            return {"idle": len(pool.idle), "busy": len(pool.busy), "connecting": pool.connecting,
                    "waiting": len(pool.waiters), "closed": dict(pool.stats.closed),
                    "queries": dict(pool.stats.queries), "pins": dict(pool.stats.pins),
                    "connects": pool.stats.connects}
        return self.call(read)

    def client_count(self) -> int:
        return self.call(lambda: len(self.proxy.clients))


def prepare_app_account(server, *, max_user_connections: int | None = None, user: str = APP_USER,
                        password: str = APP_PASSWORD, database: str = APP_DB) -> None:
    """The backend account and database the default proxy user maps to."""
    server.create_database(database)
    server.create_user(user, password, max_user_connections=max_user_connections,
                       grants="ALL PRIVILEGES ON *.*")
