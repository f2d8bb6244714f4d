# The logs an operator keeps on, from the real command line at `info`: a
# healthy proxy under steady load (more clients than backends, so checkouts
# queue for milliseconds; queries and transactions; admin logins) writes
# nothing per query, per checkout or per login. The stats line comes once per
# log.stats_period per pool, and in JSON mode every line is one JSON object.
import json
import subprocess
import sys
import threading
import time

import pymysql
import pytest

from tests.integration.test_cli_process import Output, http_get
from tests.support.net import free_port
from tests.support.proxy import APP_PASSWORD, render_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENTS = 12
CHURNING = 2  # more clients, each connecting, running a query and disconnecting, again and again
MAX_SIZE = 3
LOAD_SECONDS = 3.0
ADMIN_PASSWORD = "admin-secret"


@pytest.fixture
def start_proxy(app_server, tmp_path):
    procs = []

    def start(**log):
        port, metrics, admin = free_port(), free_port(), free_port()
        path = tmp_path / f"proxy-{len(procs)}.toml"
        path.write_text(render_config(
            app_server, proxy={"listen": f"127.0.0.1:{port}"}, pool={"max_size": MAX_SIZE},
            metrics={"listen": f"127.0.0.1:{metrics}"},
            admin={"listen": f"127.0.0.1:{admin}", "password": ADMIN_PASSWORD}, log={"level": "info", **log}))
        proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        output = Output(proc.stdout)
        wait_until(lambda: http_get(metrics, "/readyz")[0] == 200, 20,
                   lambda: f"the proxy ready; output:\n{output.text()}")
        return port, admin, output

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def connect(port, **kw):
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password=APP_PASSWORD, database="appdb",
                           autocommit=True, connect_timeout=5, **kw)


def steady_load(port: int, seconds: float) -> tuple[int, int]:
    """CLIENTS clients, each alternating a query and a short transaction for `seconds`, and
    CHURNING clients connecting for one query; returns (statements, errors)."""
    setup = connect(port)
    setup.cursor().execute("CREATE TABLE IF NOT EXISTS log_volume (id INT PRIMARY KEY, n INT NOT NULL)")
    setup.close()
    counts = {"statements": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        done = errors = 0
        try:
            conn = connect(port)
            cur = conn.cursor()
            while time.monotonic() < deadline:
                cur.execute("SELECT %s", (i,))
                cur.execute("BEGIN")
                cur.execute("INSERT INTO log_volume VALUES (%s, 1) ON DUPLICATE KEY UPDATE n = n + 1", (i,))
                cur.execute("COMMIT")
                done += 4
            conn.close()
        except pymysql.MySQLError:
            errors += 1
        with lock:
            counts["statements"] += done
            counts["errors"] += errors

    def churn() -> None:  # short-lived connections, as from a script or a PHP page
        done = errors = 0
        try:
            while time.monotonic() < deadline:
                conn = connect(port)
                conn.cursor().execute("SELECT 1")
                conn.close()
                done += 1
        except pymysql.MySQLError:
            errors += 1
        with lock:
            counts["statements"] += done
            counts["errors"] += errors

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=churn) for _ in range(CHURNING)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return counts["statements"], counts["errors"]


def admin_logins(admin_port: int, times: int) -> None:
    for _ in range(times):
        conn = pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password=ADMIN_PASSWORD,
                               connect_timeout=5)
        conn.cursor().execute("SHOW POOLS")
        conn.close()


def new_lines(output: Output, before: str) -> list[str]:
    return output.text()[len(before):].splitlines()


def test_a_healthy_proxy_under_steady_load_writes_nothing_per_query_checkout_connection_or_login(start_proxy):
    port, admin, output = start_proxy()
    before = output.text()
    statements, errors = steady_load(port, LOAD_SECONDS)
    admin_logins(admin, 3)
    lines = new_lines(output, before)
    assert errors == 0
    assert statements > 200, "the load ran"
    # Nothing per query, checkout, wait, connection or login: a healthy pool whose clients
    # queue for milliseconds at its cap is normal pooling, not news.
    assert lines == [], "\n".join(lines)


def test_the_stats_line_comes_once_per_period_per_pool(start_proxy):
    port, _, output = start_proxy(stats_period=1)
    _, errors = steady_load(port, 2.5)  # so at least one line comes while all clients are connected
    assert errors == 0

    def stats_lines():
        return [x for x in output.text().splitlines() if "mysqlpool.stats: stats pool=app " in x]

    wait_until(lambda: len(stats_lines()) >= 2, 10, lambda: f"two stats lines; output:\n{output.text()}")
    lines = stats_lines()
    fields = [dict(kv.split("=", 1) for kv in x.split(": stats ", 1)[1].split()) for x in lines]
    assert all(f.keys() == {"pool", "clients", "waiting", "backends_idle", "backends_busy", "queries_per_s",
                            "transactions_per_s", "avg_wait_ms", "max_wait_ms", "timed_out"} for f in fields), lines
    assert CLIENTS <= max(int(f["clients"]) for f in fields) <= CLIENTS + CHURNING, lines
    assert max(float(f["queries_per_s"]) for f in fields) > 0, lines
    assert max(float(f["transactions_per_s"]) for f in fields) > 0, lines


def test_json_mode_every_line_is_a_json_object(start_proxy):
    port, _, output = start_proxy(format="json", stats_period=1)
    steady_load(port, 1.0)
    # All backends held in transactions: one more client waits past the threshold (1 s).
    holders = [connect(port) for _ in range(MAX_SIZE)]
    for conn in holders:
        conn.cursor().execute("BEGIN")
        conn.cursor().execute("SELECT 1")
    waiter = threading.Thread(target=lambda: connect(port).cursor().execute("SELECT 2"))
    waiter.start()
    wait_until(lambda: "clients wait longer than" in output.text(), 10, lambda: f"the wait logged:\n{output.text()}")
    holders[0].cursor().execute("COMMIT")
    waiter.join(10)
    for conn in holders:
        conn.close()
    wait_until(lambda: "no longer wait long" in output.text(), 10, lambda: f"the end logged:\n{output.text()}")
    records = [json.loads(line) for line in output.text().splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    (stats, *_) = [r for r in records if r["logger"] == "mysqlpool.stats" and r["queries_per_s"] > 0]
    assert stats["pool"] == "app" and stats["transactions_per_s"] >= 0 and "max_wait_ms" in stats
    (start,) = [r for r in records if "clients wait longer than" in r["msg"]]
    assert start["level"] == "warning" and start["pool"] == "app" and start["cause"] == "at_cap"
    assert start["waiting"] == 1 and start["in_use"] == MAX_SIZE and start["longest_wait_s"] >= 1.0
    (end,) = [r for r in records if "no longer wait long" in r["msg"]]
    assert end["pool"] == "app" and end["waited"] == 1 and end["timed_out"] == 0 and end["longest_wait_s"] >= 1.0


def test_with_two_workers_each_line_names_its_worker(app_server, tmp_path):
    path = tmp_path / "workers.toml"
    path.write_text(render_config(app_server, proxy={"listen": f"127.0.0.1:{free_port()}", "workers": 2},
                                  pool={"max_size": 4}, log={"format": "json"}))
    proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = Output(proc.stdout)
    try:
        wait_until(lambda: output.text().count("listening on") == 2, 20,
                   lambda: f"both workers listening; output:\n{output.text()}")
    finally:
        proc.terminate()
        proc.wait(30)
    output.join(10)
    records = [json.loads(line) for line in output.text().splitlines()]
    listening = [r for r in records if "listening on" in r["msg"]]
    assert sorted(r["worker"] for r in listening) == [0, 1]
    (supervisor,) = [r for r in records if r["msg"].startswith("starting 2 workers")]
    assert "worker" not in supervisor  # the supervisor is no worker
    assert all("worker" in r for r in records if r["logger"] in ("mysqlpool.proxy", "mysqlpool.health"))
