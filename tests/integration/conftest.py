# Fixtures for black-box tests of the proxy against a real MariaDB:
#   app_server    the shared private server with the `app` account and `appdb`
#   proxy_factory start a proxy (in-process, own loop thread) in front of a
#                 server, with config sections overridden per test
#   proxy         a default proxy in front of app_server (pool max_size 5)
#   mariadb_cli   the `mariadb` client (a test fails, naming the package, without it)
from __future__ import annotations

import itertools
import shutil

import pytest

from tests.support.proxy import ProxyThread, prepare_app_account, render_config

_config_ids = itertools.count()


@pytest.fixture(scope="session")
def app_server(mariadb):
    prepare_app_account(mariadb)
    mariadb.set_global("max_allowed_packet", 64 * 1024 * 1024)
    return mariadb


@pytest.fixture
def proxy_factory(tmp_path, app_server):
    started = []

    def factory(server=None, *, users=None, start=True, **sections):
        server = server or app_server
        path = tmp_path / f"proxy-{next(_config_ids)}.toml"
        path.write_text(render_config(server, users=users, **sections))
        runner = ProxyThread(path)
        started.append(runner)
        if start:
            runner.start()
        return runner

    yield factory
    for runner in reversed(started):
        runner.stop()


@pytest.fixture
def proxy(proxy_factory):
    return proxy_factory()


@pytest.fixture
def mariadb_cli() -> str:
    """The `mariadb` command-line client's path. scripts/test.sh installs it; a run without it
    fails with the missing package named, rather than skipping."""
    path = shutil.which("mariadb")
    if path is None:
        pytest.fail("the mariadb command-line client is not installed (./scripts/test.sh installs it: "
                    "apt-get install mariadb-client)")
    return path
