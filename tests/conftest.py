# Generic pytest setup for the whole suite: markers and real MariaDB server
# fixtures. `mariadb` is one private server shared by the session (default
# options; do not change its globals, use mariadb_factory for that);
# `mariadb_factory(**server_options)` starts a dedicated server for one test
# and closes it afterwards. With MYSQL_TEST_URL set, both hand out an
# ExternalServer instead (see tests/support/mariadb.py). `tls_files` is a
# throwaway self-signed certificate and key (tests/support/tls.py).
# Proxy-specific fixtures live elsewhere: do not import mysqlpool_proxy here.
from __future__ import annotations

import pytest

from tests.support.mariadb import close_all, start_server
from tests.support.tls import self_signed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: runs against a real MariaDB server (private mariadbd, or MYSQL_TEST_URL)"
    )
    config.addinivalue_line("markers", "slow: takes several seconds; deselect with -m 'not slow'")


@pytest.fixture(scope="session")
def mariadb():
    """One started server with default options, shared by the whole session."""
    server = start_server()
    yield server
    server.close()


@pytest.fixture
def mariadb_factory():
    """Call with server options (e.g. wait_timeout=3) to get a started server for this test."""
    servers = []

    def factory(**server_options):
        server = start_server(**server_options)
        servers.append(server)
        return server

    yield factory
    close_all(reversed(servers))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate and key for localhost (TlsFiles: cert, which is also the CA, and key)."""
    return self_signed(tmp_path_factory.mktemp("tls"))
