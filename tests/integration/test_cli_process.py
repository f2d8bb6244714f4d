# The real command line (`python -m mysqlpool_proxy -c FILE`) as an operator
# runs it: SIGTERM turns readiness off, stops accepting, lets a client finish
# its transaction and exits 0; SIGHUP reloads, refusing a broken file.
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pymysql
import pytest

from tests.support.net import free_port
from tests.support.proxy import APP_PASSWORD, render_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return None, str(err)


class Output(threading.Thread):
    """What the process prints, read as it comes (so a test can wait for a line)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.start()

    def run(self) -> None:
        for line in self.stream:
            with self._lock:
                self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)


@pytest.fixture
def cli_proxy(app_server, tmp_path):
    port, metrics = free_port(), free_port()

    def write(max_size=5, broken=False):
        text = render_config(app_server, proxy={"listen": f"127.0.0.1:{port}", "shutdown_timeout": 20},
                             metrics={"listen": f"127.0.0.1:{metrics}"}, pool={"max_size": max_size})
        path.write_text(text + ("\n[pool]\nmax_size = 'oops'\n" if broken else ""))

    path = tmp_path / "proxy.toml"
    write()
    proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(proc.stdout)
    wait_until(lambda: http_get(metrics, "/readyz")[0] == 200, 20, lambda: f"the proxy ready; output:\n{output.text()}")
    yield proc, port, metrics, write, output
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def connect(port):
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password=APP_PASSWORD, database="appdb",
                           autocommit=True, connect_timeout=5)


def test_sigterm_drains_then_exits(cli_proxy):
    proc, port, metrics, _, output = cli_proxy
    busy, idle = connect(port), connect(port)
    with busy.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    idle.cursor().execute("SELECT 1")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: http_get(metrics, "/readyz")[0] == 503, 20, "/readyz answers 503")
    wait_until(lambda: _refused(port), 20, "new clients refused")
    with busy.cursor() as cur:  # the transaction in progress may finish
        cur.execute("SELECT 2")
        cur.execute("COMMIT")
    assert proc.wait(20) == 0
    output.join(10)
    assert "shutting down" in output.text()


def _refused(port):
    try:
        connect(port).close()
        return False
    except pymysql.err.OperationalError:
        return True


def test_sighup_reloads_and_refuses_a_broken_file(cli_proxy):
    proc, port, metrics, write, output = cli_proxy
    conn = connect(port)
    conn.cursor().execute("SELECT 1")

    def max_gauge():
        _, body = http_get(metrics, "/metrics")
        line = next(x for x in body.splitlines() if x.startswith('mysqlpool_backend_connections_max{pool="app"}'))
        return float(line.split()[-1])

    assert max_gauge() == 5
    write(max_size=7)
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: max_gauge() == 7, 20, "max_size 7 in the metrics")
    write(broken=True)
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in output.text(), 20, "the broken file refused")
    assert max_gauge() == 7  # the old configuration stays
    assert proc.poll() is None
    conn.cursor().execute("SELECT 2")  # and the client was never dropped
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
