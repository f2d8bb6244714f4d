# The status page (ops/status.py) on a real proxy in front of a real MariaDB,
# with its metrics port and admin console started as app.py starts them:
#   - /status.json lists the pool, a PyMySQL client in a transaction and the
#     backend it holds, and agrees with SHOW POOLS / CLIENTS / SERVERS on the
#     admin console (read with PyMySQL);
#   - PAUSE and RESUME on the console show up as recent events;
#   - a real headless browser (Debian's chromium) loads /status: the rendered
#     DOM has the pool, the client's row, its backend's row, the page's own
#     script has refreshed it (data-refreshes), and a hostile program name is
#     text, not markup; a screenshot is a PNG of the requested size.
# A missing chromium fails the browser tests naming the package
# (scripts/test.sh installs it when run as root).
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import urllib.request
from pathlib import Path

import pymysql
import pytest

from mysqlpool_proxy.events import EVENTS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "adminpw"
WAIT = 10.0  # seconds any one wait may take
BROWSER_TIMEOUT = 90.0  # seconds chromium may take for one page
HOSTILE = "<script>document.title='pwned'</script>&amp;"
WINDOW = (1280, 900)


class Live:
    """A started proxy with its status page and admin console."""

    def __init__(self, runner):
        self.runner = runner
        self.base = f"http://127.0.0.1:{runner.services.http.sockets[0].getsockname()[1]}"
        self.admin_port = runner.services.admin.sockets[0].getsockname()[1]

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        with urllib.request.urlopen(self.base + path, timeout=WAIT) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()

    def status(self) -> dict:
        status, headers, body = self.get("/status.json")
        assert status == 200 and headers["content-type"] == "application/json"
        return json.loads(body)

    def settled(self) -> None:
        """Wait until every client is READY (after a response the proxy may still run its follow-ups: LOCAL)."""
        proxy = self.runner.proxy
        wait_until(lambda: self.runner.call(lambda: all(c.state.value == "ready" for c in proxy.clients.values())),
                   WAIT, "every client to be READY")

    def admin(self, sql: str) -> list[dict]:
        with pymysql.connect(host="127.0.0.1", port=self.admin_port, user="admin", password=ADMIN_PASSWORD,
                             connect_timeout=WAIT, cursorclass=pymysql.cursors.DictCursor) as conn, \
                conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())


@pytest.fixture
def live(proxy_factory):
    EVENTS.clear()  # one ring per process: the events of this test's proxy only
    runner = proxy_factory(pool={"max_size": 3}, metrics={"listen": "127.0.0.1:0"},
                           admin={"listen": "127.0.0.1:0", "password": ADMIN_PASSWORD})
    return Live(runner)


@pytest.fixture
def in_transaction(live):
    """A PyMySQL client holding a backend: it is in a transaction. Its program name is hostile HTML."""
    conn = live.runner.connect(program_name=HOSTILE)
    conn.cursor().execute("BEGIN")
    conn.cursor().execute("SELECT 1")
    live.settled()
    yield conn
    conn.close()


def test_status_json_agrees_with_the_admin_console(live, in_transaction):
    data = live.status()
    assert data["ready"] is True and data["state"] == "running"
    [pool] = data["pools"]
    assert (pool["pool"], pool["waiting"]) == ("app", 0) and pool["in_use"] >= 1  # (the probe may ping one)
    [client] = data["clients"]
    assert (client["user"], client["pool"], client["program"], client["state"]) == ("app", "app", HOSTILE, "ready")
    assert "transaction" in client["pinned"]
    servers = {s["id"]: s for s in data["servers"]}
    assert servers[client["backend_id"]]["client_id"] == client["id"]
    assert data["omitted"] == {"pools": 0, "clients": 0, "servers": 0}

    # The console reads the same snapshot functions: the same rows. Compared on the columns that
    # cannot move between the two reads (times go on, and the health probe may ping the idle backend).
    def stable(rows, *columns):
        return [tuple(row[c] for c in columns) for row in rows]
    client_columns = ("id", "user", "pool", "address", "program", "state", "schema", "backend_id", "pinned")
    assert stable(live.admin("SHOW CLIENTS"), *client_columns) == stable(live.status()["clients"], *client_columns)
    server_columns = ("id", "pool", "thread_id", "client_id")
    assert stable(live.admin("SHOW SERVERS"), *server_columns) == stable(live.status()["servers"], *server_columns)
    pool_columns = ("pool", "max_size", "configured_max_size", "waiting", "paused", "last_error")
    console_pools = [{**p, "paused": bool(p["paused"])} for p in live.admin("SHOW POOLS")]
    assert stable(console_pools, *pool_columns) == stable(live.status()["pools"], *pool_columns)


def test_pause_and_resume_are_recent_events(live):
    live.admin("PAUSE app")
    live.admin("RESUME app")
    events = live.status()["events"]  # newest first
    kinds = [(e["kind"], e["pool"]) for e in events]
    assert kinds[:2] == [("resume", "app"), ("pause", "app")]
    assert {"time", "kind", "pool", "message"} <= set(events[0]) and events[0]["time"].endswith("Z")


def test_the_page_is_html_with_a_strict_policy_and_slash_serves_it(live, in_transaction):
    status, headers, body = live.get("/status")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'sha256-" in headers["content-security-policy"]
    assert live.get("/")[2].split(b"<main>")[0] == body.split(b"<main>")[0]
    assert HOSTILE.encode() not in body
    assert b"&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;&amp;amp;" in body


# -- a real browser ------------------------------------------------------------------------


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: the status page's browser test needs Debian's chromium package "
                    "(./scripts/test.sh installs it as root: apt-get install chromium)")
    return path


def browse(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless chromium on `url`; timers run for a few seconds of virtual time, so the page's refresh runs."""
    command = [chromium(), "--headless", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, url]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
    result = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_a_headless_browser_renders_the_page_and_its_refresh(live, in_transaction, tmp_path):
    [client] = live.status()["clients"]
    dom = browse(live.base + "/status", tmp_path / "profile", "--dump-dom").stdout
    assert 'id="pools"' in dom and "<td>app</td>" in dom
    refreshes = int(dom.split('data-refreshes="', 1)[1].split('"', 1)[0])
    assert refreshes >= 1, "the page's script did not refresh it"
    clients = dom.split('id="clients"', 1)[1].split("</section>", 1)[0]
    assert f'<td class="n">{client["id"]}</td>' in clients and "<td>ready</td>" in clients
    servers = dom.split('id="servers"', 1)[1].split("</section>", 1)[0]
    assert f'<td class="n">{client["backend_id"]}</td>' in servers
    assert "pwned" in dom and "<title>mysqlpool-proxy status</title>" in dom  # shown as text, never run
    assert "<script>document.title" not in dom


@pytest.fixture
def some_clients(live):
    """What the README's screenshot shows: a worker in a transaction, a web client between statements,
    after a PAUSE and RESUME."""
    live.admin("PAUSE app")
    live.admin("RESUME app")
    worker = live.runner.connect(program_name="billing-worker")
    worker.cursor().execute("BEGIN")
    worker.cursor().execute("SELECT 1")
    web = live.runner.connect(program_name="web")
    web.cursor().execute("SELECT 1")
    live.settled()
    yield
    worker.close()
    web.close()


def test_a_headless_browser_screenshot(live, some_clients, tmp_path):
    png = tmp_path / "status-page.png"
    browse(live.base + "/status", tmp_path / "profile", f"--screenshot={png}",
           f"--window-size={WINDOW[0]},{WINDOW[1]}")
    wait_until(png.exists, WAIT, f"chromium to write {png}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    assert len(data) > 20_000, "a page with tables and text is more than a blank PNG"
    if os.environ.get("STATUS_PAGE_SCREENSHOT"):  # a path: how docs/img/status-page.png is made
        shutil.copy(png, os.environ["STATUS_PAGE_SCREENSHOT"])
