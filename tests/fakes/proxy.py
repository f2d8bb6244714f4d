# A Proxy on the fakes: proxy_config() builds a Config directly from dicts of
# section values (no file), and start_proxy() starts a Proxy on the running
# VirtualClockLoop with no listening socket (the loop's create_server is a
# stand-in) and backends from a FakeOpener, and returns once the proxy knows
# the server, with the operator's services beside it (ops/services.py: the
# janitor among them) as app.py starts them. Clients then come from
# FakeClient(proxy).
from __future__ import annotations

import asyncio

from tests.fakes.loop import settle
from tests.fakes.opener import FakeOpener, fake_opener


def proxy_config(*, users=None, **sections):
    """A Config built directly: `pool={"max_size": 2}`, `backend={...}`, `proxy={...}`, `log={...}`."""
    from mysqlpool_proxy.config import BackendConfig, Config, LogConfig, PoolConfig, ProxyConfig, UserConfig
    classes = {"proxy": ProxyConfig, "backend": BackendConfig, "pool": PoolConfig, "log": LogConfig}
    kwargs = {name: classes[name](**values) for name, values in sections.items()}
    users = users or (UserConfig(name="app", password="pw"),)
    return Config(users=tuple(users), **kwargs)


# The services started beside each fake proxy, while their janitor runs (a task must stay referenced
# while it runs; the janitor stops by itself once the proxy has stopped).
_SERVICES: list = []


async def start_proxy(opener: FakeOpener | None = None, *, users=None, **sections):
    """A started Proxy (no listening socket) whose backends come from `opener`; the server is known."""
    from mysqlpool_proxy.ops.services import start_services
    from mysqlpool_proxy.proxy.proxy import Proxy
    proxy = Proxy(proxy_config(users=users, **sections), asyncio.get_running_loop(), opener=opener or fake_opener())
    services = await start_services(proxy)
    await proxy.start()
    services.start_janitor(proxy)
    _SERVICES.append(services)
    services.tasks[-1].add_done_callback(lambda _: _SERVICES.remove(services))
    await proxy.server_known.wait()
    await settle()
    return proxy


class ReadinessSet:
    """Stands for `proxy`, except that readiness() answers what the test sets in `answer` (None: the
    proxy's own). For the consumers of readiness (metrics, /readyz): the compiled Proxy's methods
    cannot be monkeypatched."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.answer = None

    def readiness(self):
        return self.proxy.readiness() if self.answer is None else self.answer

    def __getattr__(self, name: str):
        return getattr(self.proxy, name)
