"""The operator's services beside a running proxy: admin console, metrics and health endpoints, janitor.

`start_services` binds the listeners the config enables (a listener that
cannot: StartupError naming its key, as for the proxy's own), before the
proxy starts anything in the background; `Services.start_janitor` once the
proxy runs. `Services.stop` stops them, after the proxy has drained, so that
health and metrics answer while it does. app.py starts them for the process; tests/support/proxy.py does the
same for an in-process proxy.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ..proxy.proxy import Proxy
from ..startup import listener_errors
from .admin import start_admin_server, stop_admin_server
from .http import start_http_server, stop_http_server
from .janitor import run_janitor

__all__ = ["Services", "start_services"]

log = logging.getLogger("mysqlpool.proxy")


@dataclass(slots=True)
class Services:
    http: asyncio.AbstractServer | None = None  # metrics and health: they serve while the proxy drains
    admin: asyncio.AbstractServer | None = None  # the admin console: it serves while the proxy drains
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start_janitor(self, proxy: Proxy) -> None:
        self.tasks.append(proxy.loop.create_task(run_janitor(proxy)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.http is not None:
            await stop_http_server(self.http)
            self.http = None
        if self.admin is not None:
            await stop_admin_server(self.admin)
            self.admin = None


async def start_services(proxy: Proxy) -> Services:
    config = proxy.config
    worker = proxy.worker.index if proxy.worker else None
    services = Services()
    try:
        if config.metrics.enabled:
            assert config.metrics.listen_address is not None  # (enabled: it listens)
            with listener_errors(config, "metrics.listen", config.metrics.listen_address, worker):
                services.http = await start_http_server(proxy, config.metrics.listen_address, config.metrics.path)
        if config.admin.enabled:
            assert config.admin.listen_address is not None  # (enabled: it listens)
            with listener_errors(config, "admin.listen", config.admin.listen_address, worker):
                services.admin = await start_admin_server(proxy, config.admin.listen_address)
    except BaseException:
        await services.stop()
        raise
    return services
