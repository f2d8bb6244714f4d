# A private server whose wait_timeout an operator lowers for a while, then
# raises back (issue 10 item 13): SET GLOBAL changes it for new connections
# only, and the proxy must follow what its new backends get, both ways,
# instead of closing idle backends every 2 s until it is restarted.
import time
from contextlib import closing

import pytest

from tests.support.proxy import APP_USER, prepare_app_account

pytestmark = pytest.mark.integration


def derived(wait_timeout: float) -> float:
    return max(0.5, min(wait_timeout * 0.9, wait_timeout - 1.0))


def wait_until(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def test_wait_timeout_lowered_then_raised_back_is_followed(proxy_factory, mariadb_factory):
    server = mariadb_factory()
    prepare_app_account(server)
    usual = int(server.get_global("wait_timeout"))
    proxy = proxy_factory(server, pool={"max_size": 2})

    def idle_timeout() -> float:
        return proxy.call(proxy.proxy.idle_timeout)

    def closed_idle() -> int:
        return proxy.pool_stats()["closed"].get("idle_timeout", 0)

    def select(conn) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT @@session.wait_timeout")
            cur.fetchall()

    assert idle_timeout() == derived(usual)
    with closing(proxy.connect()) as conn:
        server.set_global("wait_timeout", 3)
        server.kill_connections(APP_USER)  # the backends opened before keep the old value
        select(conn)  # on a new backend, with 3 s
        assert idle_timeout() == 2.0
        server.set_global("wait_timeout", usual)
        # The backends opened meanwhile keep their 3 s: idle, they are closed past 2 s; the ones
        # opened after (by the next client, or the readiness probe) have the usual value again.
        wait_until(lambda: closed_idle() >= 1, "the backend with 3 s closed idle past 2 s")
        select(conn)
        wait_until(lambda: idle_timeout() == derived(usual), "the idle timeout back up")
        select(conn)
        assert idle_timeout() == derived(usual)
