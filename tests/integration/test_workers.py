# [proxy] workers = 2 with the real CLI: both workers serve clients on one
# port, the server never sees more than max_size connections in total, each
# worker's metrics carry its label, a worker that dies is restarted, and
# SIGTERM stops them all. Either worker's admin console and /metrics speak
# for both (ops/peers.py): PAUSE on one pauses the other, SHOW and a scrape
# show both, and a worker that stops answering is named within the bound.
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pymysql
import pytest

from tests.support.net import free_port
from tests.support.peak import PeakSampler
from tests.support.proxy import APP_PASSWORD, render_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-secret"


def metrics(port, query=""):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=5) as resp:
        return resp.read().decode()


def both_ready(metrics_port: int) -> bool:
    """Both workers answer /metrics and say they are ready (OSError: one does not answer yet)."""
    return all("mysqlpool_ready" in metrics(metrics_port + i) for i in (0, 1))


def consecutive_free_ports(avoid: int = -10) -> int:
    """A port p with p + 1 free too (worker i serves metrics on the configured port + i).

    Chosen below the kernel's ephemeral range, where outgoing connections never
    take ports, so a free pair stays free until the proxy binds it."""
    import random
    import socket
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(max(1024, low - 12000), low - 2)
        if abs(base - avoid) < 2:
            continue
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


def start_two_workers(app_server, tmp_path, *, admin=False):
    """The CLI with workers = 2, ready; retried with new ports if a port was taken meanwhile.
    With admin: the console too, and its port (worker i: that port + i) returned last."""
    output = ""
    for attempt in range(3):
        port, metrics_port = free_port(), consecutive_free_ports()
        admin_port = consecutive_free_ports(avoid=metrics_port)
        path = tmp_path / f"proxy-{attempt}.toml"
        console = {"listen": f"127.0.0.1:{admin_port}", "password": ADMIN_PASSWORD} if admin else {}
        path.write_text(render_config(app_server, proxy={"listen": f"127.0.0.1:{port}", "workers": 2},
                                      metrics={"listen": f"127.0.0.1:{metrics_port}"}, admin=console,
                                      pool={"max_size": 4, "checkout_timeout": 30}))
        proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_until(lambda metrics_port=metrics_port: both_ready(metrics_port), 20, "both workers ready", 0.1,
                       ignoring=(OSError,))
        except AssertionError:  # a port taken meanwhile, say: again, with new ports
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate(timeout=10)[0]
            continue
        if admin:
            return proc, port, metrics_port, admin_port
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
        for i in (0, 1):  # each worker's own figures (?scope=worker): its label, its share of the cap
            text = metrics(metrics_port + i, "?scope=worker")
            assert f'worker="{i}"' in text and f'worker="{1 - i}"' not in text
            assert f'mysqlpool_backend_connections_max{{pool="app",worker="{i}"}} 2.0' in text
        accepted = {s.labels["worker"]: s.value
                    for s in scrape(metrics_port)["mysqlpool_client_connections_accepted"].samples}
        assert sum(accepted.values()) == 30 and all(a > 0 for a in accepted.values())  # the kernel spread them

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


def console(admin_port: int, worker: int) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=admin_port + worker, user="admin", password=ADMIN_PASSWORD,
                           read_timeout=30)


def command(conn, sql: str) -> list[dict]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def client_of_worker(port: int, worker: int, others: list) -> pymysql.connections.Connection:
    """A client connection the kernel gave to `worker` (its id says which: worker i hands out i+1, i+3...)."""
    for _ in range(200):
        conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password=APP_PASSWORD,
                               database="appdb", autocommit=True, read_timeout=60)
        if (conn.thread_id() - 1) % 2 == worker:
            return conn
        others.append(conn)  # kept open, so the next connection may go elsewhere
    raise AssertionError(f"no client connection landed on worker {worker}")


def worker_pid(supervisor: int, metrics_port: int, worker: int) -> int:
    """The pid of the worker listening on metrics_port + worker (its socket's inode, among its fds)."""
    wanted = f":{metrics_port + worker:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(wanted) and fields[3] == "0A":  # LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    children = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True).stdout.split()
    for pid in children:
        fds = f"/proc/{pid}/fd"
        if any(os.readlink(f"{fds}/{fd}") in inodes for fd in os.listdir(fds)):
            return int(pid)
    raise AssertionError(f"no worker listens on {metrics_port + worker}")


def scrape(metrics_port: int) -> dict:
    """One scrape, parsed: {family name: family}; the parser refuses a family named twice."""
    from prometheus_client.parser import text_string_to_metric_families
    text = metrics(metrics_port)
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(names) == len(set(names)), "a family exposed twice"
    return {f.name: f for f in text_string_to_metric_families(text)}


def workers_of(family) -> set[str]:
    return {s.labels["worker"] for s in family.samples}


def test_either_worker_speaks_for_the_whole_proxy(app_server, tmp_path):
    proc, port, metrics_port, admin_port = start_two_workers(app_server, tmp_path, admin=True)
    clients: list = []
    try:
        consoles = [console(admin_port, 0), console(admin_port, 1)]
        for conn in consoles:  # SHOW on either: both workers' rows, the worker first
            with conn.cursor() as cur:
                cur.execute("SHOW POOLS")
                assert cur.description[0][0] == "worker"
            assert sorted((r["worker"], r["pool"]) for r in command(conn, "SHOW POOLS")) == [(0, "app"), (1, "app")]
            assert {r["worker"] for r in command(conn, "SHOW CONFIG")} == {0, 1}
        for i in (0, 1):  # one scrape of either port: both workers' series, one valid exposition
            families = scrape(metrics_port + i)
            assert workers_of(families["mysqlpool_backend_connections_max"]) == {"0", "1"}
            assert workers_of(families["mysqlpool_client_connections_accepted"]) == {"0", "1"}
            assert {s.labels["worker"]: s.value for s in families["mysqlpool_worker_up"].samples} == {"0": 1, "1": 1}

        # PAUSE on worker 0's console pauses worker 1: a client of worker 1 waits until RESUME.
        theirs = client_of_worker(port, 1, clients)
        command(consoles[0], "PAUSE")
        assert "on all 2 workers" in _last_info(consoles[0])
        assert {r["worker"]: r["paused"] for r in command(consoles[1], "SHOW POOLS")} == {0: 1, 1: 1}
        answer: list = []
        waiter = threading.Thread(target=lambda: answer.append(command(theirs, "SELECT 1 AS one")))
        waiter.start()
        wait_until(lambda: any(r["worker"] == 1 and r["waiting"] == 1 for r in command(consoles[0], "SHOW POOLS")),
                   10, "worker 1's client waiting, seen from worker 0")
        assert answer == []
        command(consoles[0], "RESUME")
        waiter.join(30)
        assert answer == [[{"one": 1}]]

        # KILL CLIENT on worker 0's console reaches worker 1's client.
        command(consoles[0], f"KILL CLIENT {theirs.thread_id()}")
        with pytest.raises(pymysql.err.OperationalError):
            command(theirs, "SELECT 1")
        with pytest.raises(pymysql.err.OperationalError, match="worker 1: Unknown thread id"):
            command(consoles[0], f"KILL CLIENT {theirs.thread_id()}")

        # A worker that stops answering: named within the bound, never a hang.
        stopped = worker_pid(proc.pid, metrics_port, 1)
        os.kill(stopped, signal.SIGSTOP)
        try:
            with pytest.raises(pymysql.err.OperationalError, match=r"worker 1 \(.*\) did not answer"):
                command(consoles[0], "SHOW POOLS")
            families = scrape(metrics_port)
            assert {s.labels["worker"]: s.value for s in families["mysqlpool_worker_up"].samples} == {"0": 1, "1": 0}
            assert workers_of(families["mysqlpool_backend_connections_max"]) == {"0"}
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert len(command(consoles[0], "SHOW POOLS")) == 2

        # SHUTDOWN on worker 1's console stops the whole proxy (no worker is restarted).
        command(consoles[1], "SHUTDOWN")
        assert "on all 2 workers" in _last_info(consoles[1])
        assert proc.wait(30) == 0
    finally:
        for conn in clients:
            try:
                conn.close()
            except pymysql.err.Error:  # the proxy is gone
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _last_info(conn) -> str:
    """The info text of the last OK the console sent (PyMySQL keeps it on the result)."""
    return conn._result.message.decode() if conn._result and conn._result.message else ""
