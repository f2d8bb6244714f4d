# [proxy] workers = 2 with the real CLI: both workers serve clients on one
# port, the server never sees more than max_size connections in total, each
# worker's metrics carry its label, a worker that dies is restarted, and
# SIGTERM stops them all.
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pymysql
import pytest

from tests.integration.test_pooling import PeakSampler
from tests.support.net import free_port
from tests.support.proxy import APP_PASSWORD, render_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def both_ready(metrics_port: int) -> bool:
    """Both workers answer /metrics and say they are ready (OSError: one does not answer yet)."""
    return all("mysqlpool_ready" in metrics(metrics_port + i) for i in (0, 1))


def consecutive_free_ports() -> int:
    """A port p with p + 1 free too (worker i serves metrics on the configured port + i).

    Chosen below the kernel's ephemeral range, where outgoing connections never
    take ports, so a free pair stays free until the proxy binds it."""
    import random
    import socket
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(200):
        base = random.randrange(max(1024, low - 12000), low - 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
                return base
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def start_two_workers(app_server, tmp_path):
    """The CLI with workers = 2, ready; retried with new ports if a port was taken meanwhile."""
    output = ""
    for attempt in range(3):
        port, metrics_port = free_port(), consecutive_free_ports()
        path = tmp_path / f"proxy-{attempt}.toml"
        path.write_text(render_config(app_server, proxy={"listen": f"127.0.0.1:{port}", "workers": 2},
                                      metrics={"listen": f"127.0.0.1:{metrics_port}"},
                                      pool={"max_size": 4, "checkout_timeout": 30}))
        proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_until(lambda: both_ready(metrics_port), 20, "both workers ready", 0.1, ignoring=(OSError,))
        except AssertionError:  # a port taken meanwhile, say: again, with new ports
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate(timeout=10)[0]
            continue
        return proc, port, metrics_port
    raise AssertionError(f"the workers did not start:\n{output}")


def test_two_workers_share_the_port_and_the_cap(app_server, tmp_path):
    proc, port, metrics_port = start_two_workers(app_server, tmp_path)
    try:
        sampler = PeakSampler(app_server, "app")
        sampler.start()
        errors = []

        def client():
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password=APP_PASSWORD,
                                       database="appdb", autocommit=True)
                with conn.cursor() as cur:
                    for _ in range(20):
                        cur.execute("BEGIN")
                        cur.execute("SELECT SLEEP(0.005)")
                        cur.execute("COMMIT")
                conn.close()
            except Exception as exc:  # collected and asserted below
                errors.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert sampler.stop() <= 4
        accepted = []
        for i in (0, 1):
            text = metrics(metrics_port + i)
            assert f'worker="{i}"' in text
            line = next(x for x in text.splitlines() if x.startswith("mysqlpool_client_connections_accepted_total"))
            accepted.append(float(line.split()[-1]))
            assert f'mysqlpool_backend_connections_max{{pool="app",worker="{i}"}} 2.0' in text
        assert sum(accepted) == 30 and all(a > 0 for a in accepted)  # the kernel spread the clients

        # A worker that dies is replaced.
        pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: len(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                              text=True).stdout.split()) == 2 and both_ready(metrics_port),
                   20, "the dead worker replaced, both ready", 0.1, ignoring=(OSError,))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
