# The processes of a benchmark run: the private MariaDB server (through
# tests/support/mariadb.py), the proxy (the real CLI, `python -m
# mysqlpool_proxy -c <generated toml>`, logging to a file), and the
# Python load generator (bench/loadgen.py, a process of its own). The floor
# legs' relay and HAProxy (bench/floor.py) share the start/stop helpers.
#
# CPU is booked per kind of process (server, proxy, relay, haproxy,
# loadgen, harness, kernel threads, and everyone else's: "foreign"), from
# psutil snapshots taken before and after each leg.
#
# Memory is read with psutil: the RSS of a process plus all its children
# (a proxy with [proxy] workers = N may run several processes), sampled in
# a background thread for peaks and time series.
"""Server, proxy and load-generator processes; RSS sampling."""

from __future__ import annotations

import atexit
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.mariadb import MariaDBServer  # noqa: E402
from tests.support.net import free_port  # noqa: E402

BENCH_USER = "bench"
BENCH_PASSWORD = "bench-pw"
BENCH_DB = "sbtest"
# Ports never to use: the shared server and someone's scratch server.
FORBIDDEN_PORTS = frozenset({3306, 13306})


def bench_port(span: int = 1) -> int:
    """A free loopback port, none of the FORBIDDEN_PORTS, with the next span - 1 ports free too.

    (With [proxy] workers = N, worker i serves metrics on the configured port + i.)
    """
    import socket

    while True:
        port = free_port()
        ports = range(port, port + span)
        if FORBIDDEN_PORTS.intersection(ports) or port + span > 65535:
            continue
        try:
            for p in ports[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


def tree_rss(pid: int) -> int:
    """RSS in bytes of a process and all its descendants (0 if it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def tree_size(pid: int) -> int:
    import psutil

    try:
        return 1 + len(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return 0


def _category(proc, me_pid: int) -> str:
    """What one of this run's own processes is: server, proxy, bare relay, HAProxy, load generator or harness."""
    if proc.pid == me_pid:
        return "harness"
    try:
        name = proc.name()
        cmdline = " ".join(proc.cmdline())
    except Exception:  # psutil.Error, gone meanwhile
        return "other"
    if name.startswith(("mariadbd", "mysqld")):
        return "server"
    if "mysqlpool_proxy" in cmdline or "mysqlpool-proxy" in cmdline:
        return "proxy"
    if name.startswith("haproxy"):
        return "haproxy"
    if "bench.relay" in cmdline:
        return "relay"
    return "loadgen"


def cpu_snapshot() -> dict:
    """CPU seconds so far, of this run's processes by category and of everyone else's, per pid.

    The difference of two snapshots (cpu_used) says how many CPU seconds the
    server, the proxy, the load generators, the harness and *other people's
    processes* (the noise the A/B alternation has to cancel) used meanwhile.
    Short-lived children that were started and reaped in between (sysbench,
    the Python load generator) show up in RUSAGE_CHILDREN.
    """
    import psutil

    me = psutil.Process()
    ours = {c.pid: c for c in me.children(recursive=True)}
    ours[me.pid] = me
    procs: dict[int, tuple[float, float, str]] = {}
    for p in psutil.process_iter(["pid", "ppid", "create_time", "cpu_times"]):
        info = p.info
        if info["cpu_times"] is None:
            continue
        t = info["cpu_times"]
        pid = info["pid"]
        if pid in ours:
            category = _category(ours[pid], me.pid)
        elif pid == 2 or info["ppid"] == 2:
            category = "kernel"  # kernel threads: softirq work for loopback traffic is partly ours
        else:
            category = "foreign"
        procs[pid] = (info["create_time"], t.user + t.system, category)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"procs": procs, "reaped": children.ru_utime + children.ru_stime, "reaped_by": dict(_REAPED)}


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per category between two snapshots (processes new since `before` count whole)."""
    used: dict[str, float] = {}
    for pid, (created, cpu, category) in after["procs"].items():
        old = before["procs"].get(pid)
        delta = cpu - old[1] if old is not None and old[0] == created else cpu
        used[category] = used.get(category, 0.0) + max(0.0, delta)
    reaped = max(0.0, after["reaped"] - before["reaped"])
    # Of the reaped children's CPU, what belonged to proxies, relays or HAProxy this process stopped.
    for category, total in after.get("reaped_by", {}).items():
        share = min(reaped, max(0.0, total - before.get("reaped_by", {}).get(category, 0.0)))
        if share:
            used[category] = used.get(category, 0.0) + share
            reaped -= share
    used["loadgen"] = used.get("loadgen", 0.0) + reaped
    return used


class RssSampler:
    """Samples tree_rss(pid) every `interval` s in a thread: series and peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{pid}")
        self._t0 = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, tree_rss(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append((time.monotonic() - self._t0, tree_rss(self.pid)))

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


# -- the server --------------------------------------------------------------------------------

def start_server(options: dict[str, Any], **kwargs: Any) -> MariaDBServer:
    server = MariaDBServer.started(options, **kwargs)
    if server.port in FORBIDDEN_PORTS:  # pragma: no cover - free_port would have to hand it out
        server.close(clean=False)
        raise RuntimeError(f"the private server got port {server.port}, which this bench must not use")
    server.create_database(BENCH_DB)
    server.create_user(BENCH_USER, BENCH_PASSWORD)
    return server


# -- the proxy ---------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_proxy_config(sections: dict[str, dict[str, Any]], users: list[dict[str, Any]]) -> str:
    lines = ["# generated by bench/run.py"]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    for user in users:
        lines.append("[[users]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in user.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _raise_nofile_in_child() -> None:  # runs in the child between fork and exec
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ProxyStartError(RuntimeError):
    pass


LIVE: set = set()  # proxies, relays, HAProxies started and not yet stopped: stopped at exit whatever happens
# CPU seconds of the proxies, relays and HAProxies this process stopped (and so reaped), by
# category: RUSAGE_CHILDREN counts them too, and cpu_used() moves them from "loadgen" back.
_REAPED = {"proxy": 0.0, "relay": 0.0, "haproxy": 0.0}


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants so far."""
    import psutil

    total = 0.0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def stop_process(proc: subprocess.Popen, category: str, sig: int, timeout: float) -> None:
    """Stop a process started in its own session (its group is killed if `sig` is not enough);
    its CPU so far is booked to `category` (see _REAPED)."""
    _REAPED[category] += tree_cpu(proc.pid)
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_for_login(port: int, proc: subprocess.Popen, timeout: float, what: str, log_path: Path,
                   log_tail: Callable[[int], str]) -> None:
    """Wait until a real login and query through `port` succeed (ProxyStartError if `proc`
    exits first or `timeout` passes)."""
    import pymysql

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProxyStartError(f"{what} exited with {proc.returncode}:\n{log_tail(30)}")
        try:
            conn = pymysql.connect(host="127.0.0.1", port=port, user=BENCH_USER, password=BENCH_PASSWORD,
                                   database=BENCH_DB, connect_timeout=2, autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
            finally:
                conn.close()
            return
        except pymysql.err.MySQLError as exc:
            last = exc
            time.sleep(0.1)
    raise ProxyStartError(f"{what} did not answer in {timeout:.0f}s (last error: {last}); "
                          f"log {log_path}:\n{log_tail(12)}")


@atexit.register
def _stop_live_proxies() -> None:
    for p in list(LIVE):
        try:
            p.stop(timeout=5)
        except Exception:  # best effort at exit
            pass


def proxy_env(source_dir: Path | None) -> dict[str, str]:
    """The proxy's environment: no MYSQLPOOL_* overrides; the snapshot first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    if source_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source_dir), *filter(None, [env.get("PYTHONPATH")])])
    return env


def snapshot_proxy_source(dest: Path, ref: str = "worktree", compiled: bool = True) -> dict[str, Any]:
    """Copy mysqlpool_proxy/ into dest/ so edits made while the bench runs do not change what it measures.

    ref "worktree": the files as they are now (committed or not); any other value is a git ref
    (e.g. HEAD) whose committed tree is exported. `compiled`: the copy's hot path is then compiled
    with mypyc, as an installed package is (setup.py). Returns what was taken, for results.json.
    """
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "mysqlpool_proxy"
    if target.exists():
        shutil.rmtree(target)
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD" if ref == "worktree" else ref],
                            capture_output=True, text=True).stdout.strip() or None
    if ref == "worktree":
        shutil.copytree(REPO / "mysqlpool_proxy", target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        shutil.copy2(REPO / "setup.py", dest / "setup.py")
        status = subprocess.run([*git, "status", "--porcelain", "--", "mysqlpool_proxy"],
                                capture_output=True, text=True).stdout
        info = {"source": "working tree", "commit": commit, "modified": bool(status.strip()),
                "modified_files": [line[3:] for line in status.splitlines()]}
    else:
        archive = subprocess.run([*git, "archive", "--format=tar", ref, "mysqlpool_proxy", "setup.py"],
                                 capture_output=True)
        if archive.returncode != 0:
            raise RuntimeError(f"git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        info = {"source": f"git {ref}", "commit": commit, "modified": False, "modified_files": []}
    if compiled:
        env = dict(os.environ, MYSQLPOOL_PROXY_COMPILE="1")
        built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=str(dest), env=env,
                               capture_output=True, text=True, timeout=1800)
        if built.returncode != 0:
            raise RuntimeError(f"compiling the proxy snapshot in {dest} failed: {built.stderr.strip()[-2000:]}")
    check = subprocess.run([sys.executable, "-c",
                            "import mysqlpool_proxy as m; print(m.__file__, m.BUILD.replace(' ', '-'), m.__version__)"],
                           cwd=str(dest), env=proxy_env(dest), capture_output=True, text=True)
    resolved = check.stdout.strip()
    if check.returncode != 0 or not resolved.startswith(str(target)):
        raise RuntimeError(f"the proxy snapshot in {dest} is not what `import mysqlpool_proxy` finds: "
                           f"{resolved or check.stderr.strip()[-500:]}")
    _, build, version = resolved.split()
    if (build == "compiled") != compiled:
        raise RuntimeError(f"the proxy snapshot in {dest} is {build}, not what was asked for")
    info["path"] = str(target)
    info["version"] = version
    info["build"] = build.replace("-", " ")
    return info


@dataclass(eq=False)
class ProxyProcess:
    """One proxy process (the CLI) in front of `backend_port`."""

    backend_port: int
    workdir: Path
    name: str = "proxy"
    pool: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen | None = None
    source_dir: Path | None = None  # a snapshot of mysqlpool_proxy/ to run (see snapshot_proxy_source)

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def config_text(self) -> str:
        sections = {
            "proxy": {"listen": f"127.0.0.1:{self.port}", **self.proxy},
            "backend": {"host": "127.0.0.1", "port": self.backend_port, **self.backend},
            "pool": dict(self.pool),
            "admin": {"listen": ""},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "log": {"level": "info"},
        }
        return render_proxy_config(sections, [{"name": BENCH_USER, "password": BENCH_PASSWORD}])

    def start(self, timeout: float = 30.0) -> ProxyProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = bench_port()
        self.metrics_port = bench_port(span=max(1, int(self.proxy.get("workers", 1))))
        self.config_path.write_text(self.config_text())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mysqlpool_proxy", "-c", str(self.config_path)],
                cwd=str(self.source_dir or REPO), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_raise_nofile_in_child, start_new_session=True, env=proxy_env(self.source_dir),
            )
        LIVE.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        wait_for_login(self.port, self.proc, timeout, "the proxy", self.log_path, self.log_tail)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def rss(self) -> int:
        return tree_rss(self.pid)

    def processes(self) -> int:
        return tree_size(self.pid)

    def metrics(self) -> dict[str, float]:
        """The metrics page as {"name{labels}": value} (empty on failure)."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        LIVE.discard(self)
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_process(proc, "proxy", signal.SIGINT, timeout)  # SIGINT: drains quickly (1 s at most)

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the Python load generator -------------------------------------------------------------------

def loadgen_command(mode: str, port: int, **opts: Any) -> list[str]:
    cmd = [sys.executable, "-m", "bench.loadgen", mode, "--port", str(port), "--user", BENCH_USER,
           "--password", BENCH_PASSWORD, "--db", BENCH_DB]
    for key, value in opts.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def run_loadgen(mode: str, port: int, timeout: float, **opts: Any) -> dict:
    """Run one load generator to completion; its last JSON line."""
    done = subprocess.run(loadgen_command(mode, port, **opts), cwd=str(REPO), capture_output=True, text=True,
                          timeout=timeout)
    return _last_json(done.stdout, done.stderr, done.returncode)


def run_loadgens(mode: str, port: int, procs: int, clients: int, seconds: float, timeout: float,
                 **opts: Any) -> list[dict]:
    """`procs` load generators sharing `clients`, started together; their results."""
    start_at = time.time() + 1.0 + 0.5 * procs  # time for the interpreters to import and connect
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    running = [subprocess.Popen(loadgen_command(mode, port, clients=n, seconds=seconds, start_at=start_at, **opts),
                                cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in shares if n > 0]
    results = []
    for p in running:
        out, err = p.communicate(timeout=timeout)
        results.append(_last_json(out, err, p.returncode))
    return results


def _last_json(stdout: str, stderr: str, code: int) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {"error": f"load generator exited {code} without a result: {stderr.strip()[-2000:]}"}


class IdleLoadgen:
    """A load generator holding `count` idle connections until close()."""

    def __init__(self, port: int, count: int, concurrency: int = 64):
        self.proc = subprocess.Popen(loadgen_command("idle", port, count=count, concurrency=concurrency),
                                     cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=_raise_nofile_in_child)
        self.count = count

    def read(self, timeout: float) -> dict:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return {"error": f"no answer from the idle load generator in {timeout:.0f}s"}
        finally:
            sel.close()
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"idle load generator exited: {self.proc.stderr.read()[-2000:]}"}
        return json.loads(line)

    def send(self, word: str) -> None:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def close(self, timeout: float = 60.0) -> dict:
        if self.proc.poll() is not None:
            return {}
        try:
            self.send("close")
            result = self.read(timeout)
            self.proc.wait(timeout)
            return result
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, ValueError):
            self.proc.kill()
            self.proc.wait(5)
            return {}
