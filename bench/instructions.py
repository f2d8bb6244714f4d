# Instructions per operation: the proxy's CPU work counted rather than timed,
# for a shared machine where wall-clock benchmarks are noise.
#
# A private mariadbd (tests/support/mariadb.py) and the proxy (the real CLI)
# are started; the proxy runs under `valgrind --tool=callgrind` (its imports
# and start-up are counted but thrown away). For each load, after a
# warm-up, `callgrind_control -z` zeroes the proxy's counters, a fixed script
# runs through the proxy from PyMySQL, `callgrind_control -d` dumps them: the
# instructions the proxy process executed in the script, divided by the
# operations. (vgdb reaches a process blocked in epoll, so zero and dump
# happen between operations, not in the middle of one.) These are user-space
# instructions: the kernel's side of the system calls is not in them, and
# the proxy's own timers (health checks, janitor) add a little. Repeated
# runs of the same code agree within about 0.5 %, whatever else the machine
# is doing.
#
# The server's side is read from its own counters: SHOW GLOBAL STATUS before
# and after the same script, run once directly and once through the proxy,
# per client operation: Questions (statements the server ran), Com_* and
# Handler_* (rows the storage engine touched). Through the proxy minus
# direct is what the proxy makes the server do.
#
# --server also runs mariadbd under callgrind, collecting only inside
# do_handle_one_connection (a connection thread's whole life: login,
# commands, the end; not InnoDB's background threads): the server's
# instructions per operation directly, through the bare relay
# (bench/relay.py, one backend per client, no parsing: what the server runs
# behind any byte relay) and through the proxy.
#
# --floor also runs the bare relay (bench/relay.py) under callgrind: its
# instructions per operation are the floor the proxy's are compared with.
#
# --syscalls counts system calls instead (no valgrind): `strace -f -c`
# attached to the server, and to the relay and the proxy, for each leg.
# strace slows the traced processes, so a read that finds no data yet (and
# the poll after it) shows up more or less often than at full speed; the
# writes and the completed reads are exact.
#
# Loads (each a fixed script on one client, sequential, so nothing waits):
#   point_select   autocommit SELECT c FROM sbtest1 WHERE id=N
#   transaction    BEGIN; a point select; UPDATE ... SET k=k+1; COMMIT
#   connect        connect and log in, one point select, COM_QUIT
# and, asked for by name (--loads), for the relay's work per row:
#   rows           SELECT id, k, c FROM sbtest1: 1,000 rows of 130 bytes
#   rows_deprecate_eof  the same for a client that negotiated CLIENT_DEPRECATE_EOF
#                  (its result sets are rewritten for it: protocol/response.py);
#                  PyMySQL logs in with the flag, and reads the packets raw
#
# It measures the checkout as it is: pure Python, or compiled in place by
# scripts/compile.sh (it says which).
#
#   python -m bench.instructions                  # about a minute
#   python -m bench.instructions --ops 500 --port 49000 --json out.json
#   python -m bench.instructions --server         # and the server's instructions (a few minutes)
#   python -m bench.instructions --floor          # and the bare relay's instructions
#   python -m bench.instructions --syscalls       # system calls instead of instructions
"""Proxy instructions (callgrind) and server statements (status counters) per operation."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pymysql  # noqa: E402
from pymysql.constants import CLIENT, COMMAND  # noqa: E402

from bench.procs import BENCH_DB, BENCH_PASSWORD, BENCH_USER, render_proxy_config, start_server  # noqa: E402

ROWS = 1000
WARM_UP = 20
# The server counters reported per operation (GLOBAL status, differences).
COUNTERS = ("Questions", "Com_select", "Com_set_option", "Com_begin", "Com_commit", "Com_update",
            "Com_rollback", "Com_change_user", "Handler_read_key", "Handler_read_rnd_next", "Handler_update",
            "Handler_write", "Handler_commit", "Connections")


def point_select(conn: pymysql.Connection, i: int) -> None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT c FROM sbtest1 WHERE id={i % ROWS + 1}")
        cur.fetchall()


def transaction(conn: pymysql.Connection, i: int) -> None:
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(f"SELECT c FROM sbtest1 WHERE id={i % ROWS + 1}")
        cur.fetchall()
        cur.execute(f"UPDATE sbtest1 SET k=k+1 WHERE id={i % ROWS + 1}")
        cur.execute("COMMIT")


def rows(conn: pymysql.Connection, i: int) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT id, k, c FROM sbtest1")
        cur.fetchall()


def rows_deprecate_eof(conn: pymysql.Connection, i: int) -> None:
    """`rows`, read packet by packet with PyMySQL's own reader (which checks sequence ids), since its
    result-set code cannot read the CLIENT_DEPRECATE_EOF framing it logged in with."""
    conn._execute_command(COMMAND.COM_QUERY, "SELECT id, k, c FROM sbtest1")
    count = conn._read_packet().read_length_encoded_integer()
    for _ in range(count):  # the column definitions, and no EOF after them
        conn._read_packet()
    while True:
        packet = conn._read_packet()  # (raises for an ERR)
        if packet.get_bytes(0) == b"\xfe":  # the OK that ends the rows
            return


LOADS: dict[str, Callable[[pymysql.Connection, int], None]] = {
    "point_select": point_select, "transaction": transaction, "rows": rows, "rows_deprecate_eof": rows_deprecate_eof}
# Loads whose client logs in with extra capability flags.
CLIENT_FLAGS = {"rows_deprecate_eof": CLIENT.DEPRECATE_EOF}


def login(port: int, client_flag: int = 0) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=port, user=BENCH_USER, password=BENCH_PASSWORD,
                           database=BENCH_DB, autocommit=True, connect_timeout=120, read_timeout=120,
                           client_flag=client_flag)


def connect_once(port: int, i: int) -> None:
    conn = login(port)
    point_select(conn, i)
    conn.close()  # COM_QUIT


class Callgrind:
    """A process under callgrind: zero its counters, dump them, read the instructions since the zero."""

    def __init__(self, pid: int, out_prefix: Path):
        self.pid = pid
        self.out_prefix = out_prefix

    def _control(self, option: str) -> None:
        subprocess.run(["callgrind_control", option, str(self.pid)], check=True, capture_output=True, timeout=120)

    def zero(self) -> None:
        self._control("-z")

    def dump(self) -> int:
        before = set(self.out_prefix.parent.glob(self.out_prefix.name + "*"))
        self._control("-d")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = set(self.out_prefix.parent.glob(self.out_prefix.name + "*")) - before
            for path in new:
                text = path.read_text(errors="replace")
                found = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
                if found:
                    return int(found.group(1))
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump")


class Strace:
    """System calls of a process (all its threads), counted by `strace -f -c` while attached."""

    def __init__(self, pid: int, out: Path):
        self.pid = pid
        self.out = out
        self.proc: subprocess.Popen | None = None

    def zero(self) -> None:
        self.out.unlink(missing_ok=True)
        self.proc = subprocess.Popen(["strace", "-f", "-c", "-q", "-o", str(self.out), "-p", str(self.pid)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread (strace has no ready signal)

    def dump(self) -> dict[str, int]:
        assert self.proc is not None
        time.sleep(0.3)  # the last reads and writes of the script
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        self.proc = None
        calls = {}
        for line in self.out.read_text().splitlines():
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
                calls[fields[-1]] = int(fields[3])
        return calls


Probe = Callgrind | Strace


def server_status(conn: pymysql.Connection) -> dict[str, int]:
    """The server's global counters, read on a connection of the harness's own."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS")
        status = dict(cur.fetchall())
    return {name: int(status.get(name, 0)) for name in COUNTERS}


def run_load(name: str, port: int, ops: int) -> Callable[[], None]:
    """The measured part of a load, as a callable (its client already connected and warmed up)."""
    if name == "connect":
        for i in range(WARM_UP):
            connect_once(port, i)

        def logins() -> None:
            for i in range(ops):
                connect_once(port, i)
        return logins
    conn = login(port, CLIENT_FLAGS.get(name, 0))
    step = LOADS[name]
    for i in range(WARM_UP):
        step(conn, i)

    def measured() -> None:
        for i in range(ops):
            step(conn, i)
    return measured


def measure(name: str, port: int, ops: int, status_conn: pymysql.Connection, probes: dict[str, Probe]) -> dict:
    """One load through `port`: the server's counters per op, and what each probe counted per op
    ("proxy", "server", "relay": instructions under callgrind, or system calls by name under strace)."""
    measured = run_load(name, port, ops)
    before = server_status(status_conn)
    for probe in probes.values():
        probe.zero()
    measured()
    out: dict = {}
    for who, probe in probes.items():
        counted = probe.dump()
        if isinstance(counted, dict):
            out[f"{who}_syscalls_per_op"] = {k: round(v / ops, 2) for k, v in sorted(counted.items()) if v}
        else:
            out[f"{who}_instructions_per_op"] = round(counted / ops)
    after = server_status(status_conn)
    # The SHOW GLOBAL STATUS that reads `before` is itself counted in Questions: subtract it.
    diff = {k: after[k] - before[k] - (1 if k == "Questions" else 0) for k in COUNTERS}
    out["server_per_op"] = {k: round(v / ops, 2) for k, v in diff.items() if v}
    return out


def start_proxy(backend_port: int, port: int, workdir: Path, max_size: int,
                valgrind: bool = True) -> tuple[subprocess.Popen, Path]:
    """The proxy CLI (under callgrind unless told), serving `port`; returns the process and the dump
    files' prefix."""
    config = workdir / "proxy.toml"
    config.write_text(render_proxy_config(
        {"proxy": {"listen": f"127.0.0.1:{port}"},
         "backend": {"host": "127.0.0.1", "port": backend_port, "connect_timeout": 120},
         "pool": {"max_size": max_size, "checkout_timeout": 120},
         "admin": {"listen": ""}, "metrics": {"listen": ""}, "log": {"level": "warning"}},
        [{"name": BENCH_USER, "password": BENCH_PASSWORD}]))
    prefix = workdir / "callgrind.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONHASHSEED"] = "0"
    with open(workdir / "proxy.log", "ab") as log:
        launcher = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}"] if valgrind else []
        proc = subprocess.Popen(
            [*launcher, sys.executable, "-m", "mysqlpool_proxy", "-c", str(config)],
            cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    wait_until_serving(proc, port, workdir / "proxy.log")
    return proc, prefix


def start_relay(backend_port: int, port: int, workdir: Path, valgrind: bool = False) -> subprocess.Popen:
    """bench/relay.py serving `port` in front of the server (under callgrind if told: its dumps are
    `workdir/relay.callgrind.out*`)."""
    launcher = (["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir / 'relay.callgrind.out'}"]
                if valgrind else [])
    with open(workdir / "relay.log", "ab") as log:
        proc = subprocess.Popen(
            [*launcher, sys.executable, "-m", "bench.relay", "--listen", f"127.0.0.1:{port}", "--backend",
             f"127.0.0.1:{backend_port}"],
            cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_serving(proc, port, workdir / "relay.log")
    return proc


def relay_probe(relay: subprocess.Popen, workdir: Path, counted: bool) -> dict[str, Probe]:
    """The relay's own instructions, where it runs under callgrind."""
    return {"relay": Callgrind(relay.pid, workdir / "relay.callgrind.out")} if counted else {}


def wait_until_serving(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    """Wait until a login through `port` succeeds."""
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{log_path.stem} exited: see {log_path}")
        try:
            login(port).close()
            return
        except pymysql.err.MySQLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def server_launcher(out_prefix: Path) -> list[str]:
    """valgrind counting only what mariadbd's connection threads run: a connection's whole life (login,
    commands, the end), not InnoDB's background threads or the listener's accept."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_prefix}",
            "--toggle-collect=do_handle_one_connection*"]


def prepare_table(server) -> None:
    server.execute(f"CREATE TABLE {BENCH_DB}.sbtest1 (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL)")
    server.execute(f"INSERT INTO {BENCH_DB}.sbtest1 SELECT seq, seq, REPEAT('x', 119) "
                   f"FROM {BENCH_DB}.seq_1_to_{ROWS}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ops", type=int, default=300, help="operations per load (connect: a fifth of it)")
    ap.add_argument("--port", type=int, default=49000,
                    help="the proxy's listening port (the relay, with --server or --syscalls: the next one)")
    ap.add_argument("--loads", default="point_select,transaction,connect")
    ap.add_argument("--max-size", type=int, default=4, help="the pool's max_size")
    ap.add_argument("--server", action="store_true",
                    help="also count the server's instructions (mariadbd under callgrind), direct, through "
                         "the bare relay and through the proxy")
    ap.add_argument("--syscalls", action="store_true",
                    help="count system calls (strace) of the server, the relay and the proxy, not instructions")
    ap.add_argument("--floor", action="store_true",
                    help="also count the bare relay's instructions (bench/relay.py under callgrind): the floor")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (config, log, dumps)")
    opts = ap.parse_args(argv)
    needed = "strace" if opts.syscalls else "valgrind"
    if not shutil.which(needed):
        print(f"{needed} is not installed (apt-get install -y {needed})", file=sys.stderr)
        return 2
    import mysqlpool_proxy
    print(f"proxy: the checkout, {mysqlpool_proxy.BUILD} (scripts/compile.sh compiles it in place; "
          "--clean undoes that)", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="mysqlpool-instructions-"))
    server_prefix = workdir / "server.callgrind.out"
    if opts.server and not opts.syscalls:
        # Under valgrind, InnoDB cannot reserve its default (huge) address range for the buffer pool.
        server = start_server({"innodb_buffer_pool_size_max": "64M"}, launcher=server_launcher(server_prefix),
                              startup_timeout=600)
    else:
        server = start_server({})
    procs: list[subprocess.Popen] = []
    results: dict = {}
    try:
        prepare_table(server)
        proc, prefix = start_proxy(server.port, opts.port, workdir, opts.max_size, valgrind=not opts.syscalls)
        procs.append(proc)
        legs: dict[str, tuple[int, dict[str, Probe]]] = {"direct": (server.port, {})}
        assert server.pid is not None
        if opts.syscalls:
            relay = start_relay(server.port, opts.port + 1, workdir)
            procs.append(relay)
            legs["direct"] = (server.port, {"server": Strace(server.pid, workdir / "server.strace")})
            legs["relay"] = (opts.port + 1, {"server": Strace(server.pid, workdir / "server.strace"),
                                             "relay": Strace(relay.pid, workdir / "relay.strace")})
            legs["proxy"] = (opts.port, {"server": Strace(server.pid, workdir / "server.strace"),
                                         "proxy": Strace(proc.pid, workdir / "proxy.strace")})
        elif opts.server:
            relay = start_relay(server.port, opts.port + 1, workdir, valgrind=opts.floor)
            procs.append(relay)
            server_callgrind = Callgrind(server.pid, server_prefix)
            legs["direct"] = (server.port, {"server": server_callgrind})
            server_probe: dict[str, Probe] = {"server": server_callgrind}
            legs["relay"] = (opts.port + 1, server_probe | relay_probe(relay, workdir, opts.floor))
            legs["proxy"] = (opts.port, {"server": server_callgrind, "proxy": Callgrind(proc.pid, prefix)})
        else:
            legs["proxy"] = (opts.port, {"proxy": Callgrind(proc.pid, prefix)})
            if opts.floor:
                relay = start_relay(server.port, opts.port + 1, workdir, valgrind=True)
                procs.append(relay)
                legs["relay"] = (opts.port + 1, relay_probe(relay, workdir, True))
        status_conn = server.connect()
        for name in opts.loads.split(","):
            ops = max(1, opts.ops // 5) if name == "connect" else opts.ops
            results[name] = {"ops": ops} | {leg: measure(name, port, ops, status_conn, probes)
                                             for leg, (port, probes) in legs.items()}
            print(report(name, results[name]), flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        server.close()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory: {workdir}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def report(name: str, r: dict) -> str:
    """A load's figures: instructions, server counters and system calls, a column per leg."""
    legs = [leg for leg in ("direct", "relay", "proxy") if leg in r]
    lines = [f"{name} ({r['ops']} operations), per operation:", "  " + f"{'':<34}" + "".join(
        f"{leg:>10}" for leg in legs)]

    def row(label: str, values: list) -> None:
        if any(v is not None for v in values):
            lines.append(f"  {label:<34}" + "".join(f"{'-' if v is None else format(v, ','):>10}" for v in values))

    row("proxy instructions", [r[leg].get("proxy_instructions_per_op") for leg in legs])
    row("relay instructions", [r[leg].get("relay_instructions_per_op") for leg in legs])
    row("server instructions (connections)", [r[leg].get("server_instructions_per_op") for leg in legs])
    for k in COUNTERS:
        row(f"server {k}", [r[leg]["server_per_op"].get(k, 0) if any(
            k in r[x]["server_per_op"] for x in legs) else None for leg in legs])
    for who in ("server", "relay", "proxy"):
        key = f"{who}_syscalls_per_op"
        names = sorted({n for leg in legs for n in r[leg].get(key, {})})
        for n in names:
            row(f"{who} {n}()", [r[leg][key].get(n, 0) if key in r[leg] else None for leg in legs])
        if names:
            row(f"{who} system calls", [round(sum(r[leg][key].values()), 2) if key in r[leg] else None
                                        for leg in legs])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
