# The workloads of bench/run.py. Each runs its load directly against the
# private server and through the proxy in alternation (direct, proxy,
# direct, proxy, ...; with a third "proxy, 2 workers" leg where asked), so
# slow drifts of the machine hit both sides alike; the table shows medians
# and results.json keeps every sample. The sysbench point selects (at 1, 8
# and 32 clients) and connect-per-request also run through the floor legs,
# a bare uvloop relay and HAProxy (bench/floor.py), in the same alternation:
# direct, relay, HAProxy, proxy.
#
# Pool sizes (documented in docs/performance.md):
#   point selects     max_size 32: one backend per client at 8 and 32
#                     clients; 128 clients share 32 backends
#   connect/request   max_size 8 (= the number of concurrent requesters)
#   idle clients      max_size 4 (idle clients hold no backend)
#   large result      max_size 4, result_buffer_bytes 4 MiB
#   mixed             max_size 8 for 64 sysbench threads (the setup)
"""Benchmark workloads: point selects, connect per request, idle clients, large result, mixed."""

from __future__ import annotations

import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import sysbench as sb
from bench.floor import FLOOR_LEGS, FloorProcess
from bench.procs import (
    BENCH_DB,
    BENCH_PASSWORD,
    BENCH_USER,
    IdleLoadgen,
    ProxyProcess,
    ProxyStartError,
    RssSampler,
    cpu_snapshot,
    cpu_used,
    run_loadgen,
    run_loadgens,
    tree_rss,
)
from bench.report import Row, Target
from bench.stats import LatencyHistogram

MiB = 1024 * 1024
KiB = 1024

# The targets.
POINT_32_RATIO = Target("ratio_min", 0.5)
POINT_8_ADDED_MS = Target("delta_max", 0.15, "ms")
CONNECT_RATIO = Target("ratio_min", 1.0)
IDLE_KIB = Target("proxy_max", 10, "KiB")
LARGE_RATIO = Target("ratio_min", 0.8)
# The floor targets (issue 13), as ("max" | "min", limit) per comparison of bench/report.py.
POINT_FLOOR_TARGETS = {"proxy_cpu_vs_relay": ("max", 1.3), "server_cpu_vs_relay": ("max", 1.1)}
POINT_FLOOR_THROUGHPUT = {"throughput_vs_haproxy": ("min", 0.9)}  # at 8 and 32 clients
CONNECT_FLOOR_TARGETS = {"proxy_us": ("max", 100), "throughput_vs_direct": ("min", 1.0)}

# A leg during which other processes used more than this many cores (on
# average) is flagged in the log and in results.md.
NOISY_CORES = 0.1

WORKLOADS = ("point_sysbench", "point_python", "connect", "idle", "large", "mixed", "workers")


@dataclass
class Settings:
    quick: bool = False
    rounds: int = 3
    point_seconds: float = 15.0
    python_seconds: float = 10.0
    connect_seconds: float = 10.0
    mixed_seconds: float = 20.0
    warmup_seconds: float = 3.0
    point_clients: tuple[int, ...] = (1, 8, 32, 128)
    floor: bool = True  # the bare relay and HAProxy legs
    floor_clients: tuple[int, ...] = (1, 8, 32)
    pool_cap: int = 32
    table_size: int = 100_000
    loadgen_procs: int = 1
    connect_clients: int = 8
    connect_procs: int = 2
    idle_count: int = 10_000
    idle_direct_count: int = 10_000
    idle_procs: int = 4
    large_rows: int = 1_000_000
    result_buffer_bytes: int = 4 * MiB
    slow_pause_every: int = 10_000
    slow_pause: float = 0.12
    mixed_clients: int = 64
    mixed_pool: int = 8
    mixed_ps_mode: str = "disable"
    workers: int = 2

    @classmethod
    def quick_settings(cls) -> Settings:
        return cls(quick=True, rounds=2, point_seconds=3, python_seconds=3, connect_seconds=3, mixed_seconds=4,
                   warmup_seconds=1, idle_count=1000, idle_direct_count=1000, idle_procs=2, large_rows=100_000,
                   slow_pause_every=10_000, slow_pause=0.1)

    @property
    def server_max_connections(self) -> int:
        return max(self.idle_direct_count, max(self.point_clients), self.mixed_clients) + 500


@dataclass
class Bench:
    settings: Settings
    server: Any  # tests.support.mariadb.MariaDBServer
    workdir: Path
    sysbench: str | None
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    noise: list[dict[str, Any]] = field(default_factory=list)
    log: Callable[[str], None] = print
    quiet_gate: Callable[[], Any] | None = None  # called before each round (bench/run.py --wait-quiet)
    proxy_source: Path | None = None  # the snapshot of mysqlpool_proxy/ the proxies run
    haproxy: str | None = None  # the haproxy binary (no HAProxy leg without it)
    floor: list[dict[str, Any]] = field(default_factory=list)  # the floor loads (bench/report.py render_floor)

    # -- helpers ----------------------------------------------------------------------------

    def fail(self, workload: str, what: str, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.failures.append({"workload": workload, "what": what, "error": text})
        self.log(f"  FAILED {workload} / {what}: {text}")
        return text

    def proxy(self, name: str, *, pool: dict | None = None, proxy: dict | None = None,
              backend: dict | None = None) -> ProxyProcess:
        pool = {"max_size": 8, **(pool or {})}
        backend = {"max_connections": max(100, pool["max_size"] * 2 + 10), **(backend or {})}
        p = ProxyProcess(self.server.port, self.workdir / "proxy", name=name, pool=pool, proxy=proxy or {},
                         backend=backend, source_dir=self.proxy_source)
        return p.start()

    def start_floor(self, workload: str) -> dict[str, FloorProcess]:
        """The floor legs' processes (bare relay, HAProxy) in front of the server; a leg that cannot
        start is recorded as a failure and left out (HAProxy when it is not installed, silently)."""
        started: dict[str, FloorProcess] = {}
        if not self.settings.floor:
            return started
        for kind in FLOOR_LEGS:
            if kind == "haproxy" and not self.haproxy:
                continue  # not installed: bench/run.py said so, and results.md says so
            try:
                started[kind] = FloorProcess(kind, self.server.port, self.workdir / "proxy",
                                             haproxy=self.haproxy).start()
            except ProxyStartError as exc:
                self.fail(workload, kind, exc)
        return started

    def add_floor(self, load: str, workload: str, samples: dict[str, list[dict]], targets: dict,
                  unit: str = "q/s") -> None:
        """Record one floor load: its legs' samples (qps, avg_ms, p99_ms) and the targets; CPU per
        operation comes from the noise entries of `workload` (the alternation's name)."""
        legs = {k: [{"qps": r.get("qps"), "avg_ms": r.get("avg_ms"), "p99_ms": r.get("p99_ms")} for r in v]
                for k, v in samples.items() if k in ("direct", *FLOOR_LEGS, "proxy")}
        self.floor.append({"load": load, "workload": workload, "unit": unit, "legs": legs, "targets": targets})

    def alternate(self, workload: str, legs: dict[str, Callable[[], Any]], rounds: int | None = None
                  ) -> dict[str, list[Any]]:
        """Run the legs in turn (A B A B ...), `rounds` times; a leg that fails is dropped."""
        samples: dict[str, list[Any]] = {name: [] for name in legs}
        dead: set[str] = set()
        for r in range(rounds or self.settings.rounds):
            if self.quiet_gate is not None:
                self.quiet_gate()
            for name, leg in legs.items():
                if name in dead:
                    continue
                self.log(f"  {workload}: round {r + 1}, {name}")
                before, t0 = cpu_snapshot(), time.monotonic()
                try:
                    sample = leg()
                    samples[name].append(sample)
                    self.note_noise(workload, name, r, before, t0, _ops_of(sample))
                except Exception as exc:  # recorded, the run goes on
                    self.fail(workload, name, exc)
                    self.raw.setdefault("tracebacks", []).append(traceback.format_exc())
                    dead.add(name)
        return samples

    def note_noise(self, workload: str, leg: str, round_: int, before: dict, t0: float,
                   ops: int | None = None) -> None:
        """Record the cores used during this leg: server, proxy, load generator, harness, other people's;
        and, when the leg says how many operations it did, CPU microseconds per operation."""
        seconds = time.monotonic() - t0
        used = cpu_used(before, cpu_snapshot())
        cores = {k: round(v / seconds, 3) if seconds > 0 else 0.0 for k, v in sorted(used.items())}
        foreign = cores.pop("foreign", 0.0)
        entry = {"workload": workload, "leg": leg, "round": round_ + 1, "seconds": round(seconds, 2),
                 "foreign_cores": foreign, "cores": cores}
        if ops:
            entry["ops"] = ops
            entry["us_per_op"] = {k: round(v / ops * 1e6, 3) for k, v in sorted(used.items()) if k != "foreign"}
        self.noise.append(entry)
        self.log("    cores used: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items())
                 + f"; other people's processes {foreign:.2f}" + (" (noisy)" if foreign > NOISY_CORES else ""))

    def sysbench_cmd(self, test: str, port: int, threads: int, seconds: float, ps_mode: str = "disable",
                     action: str = "run") -> list[str]:
        return sb.build_command(test, host="127.0.0.1", port=port, user=BENCH_USER, password=BENCH_PASSWORD,
                                db=BENCH_DB, threads=threads, seconds=seconds, table_size=self.settings.table_size,
                                ps_mode=ps_mode, action=action, sysbench=self.sysbench or "sysbench")

    def sysbench_run(self, test: str, port: int, threads: int, seconds: float, ps_mode: str = "disable"
                     ) -> sb.SysbenchResult:
        result, _ = sb.run(self.sysbench_cmd(test, port, threads, seconds, ps_mode), timeout=seconds + 180)
        return result

    # -- data --------------------------------------------------------------------------------

    def prepare_point_table(self) -> None:
        """sbtest1 with table_size rows: sysbench's own prepare, or the same schema in SQL."""
        if self.server.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                               "AND TABLE_NAME = 'sbtest1'", (BENCH_DB,))[0][0]:
            return
        started = time.monotonic()
        if self.sysbench:
            sb.run(self.sysbench_cmd("oltp_point_select", self.server.port, 1, 0, action="prepare"), timeout=600)
        else:
            n = self.settings.table_size
            with self.server.connect(database=BENCH_DB) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE sbtest1 (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                            "k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', "
                            "pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) ENGINE=InnoDB")
                cur.execute(f"INSERT INTO sbtest1 (id, k, c, pad) SELECT seq, FLOOR(1 + RAND() * {n}), "
                            "LEFT(REPEAT(MD5(seq), 4), 119), LEFT(REPEAT(MD5(-seq), 2), 59) "
                            f"FROM seq_1_to_{n}")
        self.log(f"  sbtest1 ready ({self.settings.table_size:,} rows) in {time.monotonic() - started:.1f}s")

    def prepare_large_table(self) -> None:
        n = self.settings.large_rows
        started = time.monotonic()
        with self.server.connect(database=BENCH_DB) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS big")
            cur.execute("CREATE TABLE big (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(100) NOT NULL) "
                        "ENGINE=InnoDB")
            cur.execute(f"INSERT INTO big SELECT seq, seq * 7 % 1000003, LEFT(REPEAT(MD5(seq), 4), 100) "
                        f"FROM seq_1_to_{n}")
            cur.execute("SELECT SUM(LENGTH(c)) + COUNT(*) * 2 FROM big")
        self.log(f"  table big ready ({n:,} rows) in {time.monotonic() - started:.1f}s")

    # -- point selects: sysbench -----------------------------------------------------------------

    def point_sysbench(self, clients: tuple[int, ...] | None = None, workers: int = 0, floor: bool = True) -> None:
        s = self.settings
        if not self.sysbench:
            self.rows.append(Row("point select, sysbench", "throughput", "q/s", available=False,
                                 note="sysbench is not installed (apt-get install sysbench); see the Python rows"))
            return
        clients = clients or s.point_clients
        name = "point_sysbench"
        pool = {"max_size": s.pool_cap}
        main = self.proxy("point", pool=pool)
        multi, multi_note = None, ""
        floor_procs: dict[str, FloorProcess] = {}
        try:
            if workers > 1:
                multi, multi_note = self.start_workers_proxy(pool, workers)
            if floor and set(clients) & set(s.floor_clients):
                floor_procs = self.start_floor(name)

            def run(port: int, n: int) -> sb.SysbenchResult:
                return self.sysbench_run("oltp_point_select", port, n, s.point_seconds)
            legs_for = {}
            for n in clients:
                legs = {"direct": lambda n=n: run(self.server.port, n)}
                if n in s.floor_clients:
                    legs.update({kind: (lambda n=n, port=f.port: run(port, n)) for kind, f in floor_procs.items()})
                legs["proxy"] = lambda n=n: run(main.port, n)
                if multi is not None and n >= 32:
                    legs[f"proxy_{workers}w"] = lambda n=n: run(multi.port, n)
                legs_for[n] = legs
            self.log(f"  warm-up ({s.warmup_seconds:g}s each)")
            ports = [self.server.port, *(f.port for f in floor_procs.values()), main.port,
                     *([multi.port] if multi else [])]
            for port in ports:
                try:
                    self.sysbench_run("oltp_point_select", port, 8, s.warmup_seconds)
                except sb.SysbenchError as exc:
                    self.fail(name, f"warm-up on port {port}", exc)
            for n, legs in legs_for.items():
                workload = f"{name} {clients_label(n)}"
                samples = self.alternate(workload, legs)
                self.raw.setdefault(name, {})[str(n)] = {k: [r.to_json() for r in v] for k, v in samples.items()}
                points = {k: [_sb_point(r) for r in v] for k, v in samples.items()}
                self.point_rows("sysbench", n, points, targets=True)
                if set(points) & set(FLOOR_LEGS):
                    targets = {**POINT_FLOOR_TARGETS, **(POINT_FLOOR_THROUGHPUT if n in (8, 32) else {})}
                    self.add_floor(f"point select, {clients_label(n)}", workload, points, targets)
            if workers > 1:
                self.worker_rows(clients, workers, multi_note, "sysbench")
        finally:
            for p in (main, multi, *floor_procs.values()):
                if p is not None:
                    p.stop()

    def start_workers_proxy(self, pool: dict, workers: int) -> tuple[ProxyProcess | None, str]:
        try:
            p = self.proxy(f"point_{workers}w", pool=pool, proxy={"workers": workers})
        except ProxyStartError as exc:
            note = f"not available: the proxy did not start with [proxy] workers = {workers}: {exc}"
            self.fail("workers", "start", note)
            return None, note
        time.sleep(1.0)
        procs = p.processes()
        self.raw["workers_processes"] = procs
        if procs < 2:
            p.stop()
            note = (f"not available: with [proxy] workers = {workers} the proxy ran {procs} process "
                    "(the setting is accepted but does not start workers yet)")
            self.fail("workers", "start", note)
            return None, note
        return p, f"[proxy] workers = {workers}: {procs} processes (RSS summed over them)"

    def worker_rows(self, clients: tuple[int, ...], workers: int, note: str, tool: str) -> None:
        name = f"proxy_{workers}w"
        for n in clients:
            if n < 32:
                continue
            label = f"point select, {tool}, {clients_label(n)}, proxy workers = {workers}"
            raw = self.raw.get(f"point_{tool}", {}).get(str(n), {})
            direct = [_sb_point_json(r)["qps"] for r in raw.get("direct", [])]
            multi = [_sb_point_json(r)["qps"] for r in raw.get(name, [])]
            available = bool(multi)
            self.rows.append(Row.from_samples(label, "throughput", "q/s", direct, multi, available=available,
                                              note="" if available and not note.startswith("not") else note))

    # -- point selects: the Python load generator --------------------------------------------------

    def point_python(self) -> None:
        s = self.settings
        main = self.proxy("point_py", pool={"max_size": s.pool_cap})
        try:
            def leg(port: int, n: int) -> dict:
                return _merge_loadgen(run_loadgens("point", port, s.loadgen_procs, n, s.python_seconds,
                                                   timeout=s.python_seconds + 120, table_size=s.table_size))
            self.log(f"  warm-up ({s.warmup_seconds:g}s each)")
            for port in (self.server.port, main.port):
                _merge_loadgen(run_loadgens("point", port, 1, 8, s.warmup_seconds, timeout=120,
                                            table_size=s.table_size))
            for n in s.point_clients:
                samples = self.alternate(f"point_python {clients_label(n)}",
                                         {"direct": lambda n=n: leg(self.server.port, n),
                                          "proxy": lambda n=n: leg(main.port, n)})
                self.raw.setdefault("point_python", {})[str(n)] = samples
                for k, v in samples.items():
                    for r in v:
                        if r.get("errors"):
                            self.fail("point_python", f"{n} clients {k}",
                                      f"{r['errors']} errors: {r.get('error_samples')}")
                self.point_rows("Python/aiomysql", n, samples, targets=not self.sysbench)
        finally:
            main.stop()

    def point_rows(self, tool: str, n: int, samples: dict[str, list[dict]], targets: bool) -> None:
        label = f"point select, {tool}, {clients_label(n)}"
        d, p = samples.get("direct", []), samples.get("proxy", [])

        def col(rows, key):
            return [r[key] for r in rows if r.get(key) is not None]
        self.rows.append(Row.from_samples(label, "throughput", "q/s", col(d, "qps"), col(p, "qps"),
                                          target=POINT_32_RATIO if targets and n == 32 else None))
        self.rows.append(Row.from_samples(label, "latency avg", "ms", col(d, "avg_ms"), col(p, "avg_ms"),
                                          target=POINT_8_ADDED_MS if targets and n == 8 else None))
        self.rows.append(Row.from_samples(label, "latency p50", "ms", col(d, "p50_ms"), col(p, "p50_ms")))
        self.rows.append(Row.from_samples(label, "latency p99", "ms", col(d, "p99_ms"), col(p, "p99_ms")))

    # -- connect per request ---------------------------------------------------------------------

    def connect(self) -> None:
        s = self.settings
        n = s.connect_clients
        main = self.proxy("connect", pool={"max_size": n})
        floor_procs: dict[str, FloorProcess] = {}
        try:
            if self.sysbench:
                floor_procs = self.start_floor("connect")
                script = str(sb.CONNECT_SCRIPT)

                def run(port: int) -> dict:
                    return _sb_point(self.sysbench_run(script, port, n, s.connect_seconds))
                legs = {"direct": lambda: run(self.server.port)}
                legs.update({kind: (lambda port=f.port: run(port)) for kind, f in floor_procs.items()})
                legs["proxy"] = lambda: run(main.port)
                samples = self.alternate("connect sysbench", legs)
                self.raw["connect_sysbench"] = samples
                self.connect_rows(f"connect per request, sysbench (C client), {n} workers", samples, True)
                if floor_procs:
                    self.add_floor(f"connect per request, {n} workers", "connect sysbench", samples,
                                   CONNECT_FLOOR_TARGETS, unit="req/s")

            def leg(port: int) -> dict:
                return _merge_loadgen(run_loadgens("connect", port, s.connect_procs, n, s.connect_seconds,
                                                   timeout=s.connect_seconds + 120, table_size=s.table_size))
            samples = self.alternate("connect python", {"direct": lambda: leg(self.server.port),
                                                        "proxy": lambda: leg(main.port)})
            self.raw["connect_python"] = samples
            for k, v in samples.items():
                for r in v:
                    if r.get("errors"):
                        self.fail("connect", f"python {k}", f"{r['errors']} errors: {r.get('error_samples')}")
            self.connect_rows(f"connect per request, Python/aiomysql, {n} workers", samples, not self.sysbench)
        finally:
            for p in (main, *floor_procs.values()):
                p.stop()

    def connect_rows(self, label: str, samples: dict[str, list[dict]], targets: bool) -> None:
        d, p = samples.get("direct", []), samples.get("proxy", [])
        self.rows.append(Row.from_samples(label, "requests/s", "req/s", [r["qps"] for r in d],
                                          [r["qps"] for r in p], target=CONNECT_RATIO if targets else None))
        self.rows.append(Row.from_samples(label, "latency avg", "ms", [r["avg_ms"] for r in d],
                                          [r["avg_ms"] for r in p]))

    # -- idle clients ----------------------------------------------------------------------------

    def idle(self) -> None:
        s = self.settings
        legs = {"direct": self.idle_direct, "proxy": self.idle_proxy}
        samples = self.alternate("idle", legs)
        self.raw["idle"] = samples
        d, p = samples["direct"], samples["proxy"]
        note = (f"direct = mariadbd's own RSS growth per connection at {s.idle_direct_count:,} idle connections "
                f"(max_connections raised to {s.server_max_connections:,}); proxy = the proxy's RSS growth per "
                f"client at {s.idle_count:,} idle clients (pool max_size 4)")
        self.rows.append(Row.from_samples(f"idle clients ({s.idle_count:,} through the proxy)",
                                          "RSS per idle client", "KiB",
                                          [r["per_conn_kib"] for r in d if r.get("opened")],
                                          [r["per_conn_kib"] for r in p if r.get("opened")],
                                          target=IDLE_KIB, note=note))
        self.rows.append(Row.from_samples(f"idle clients ({s.idle_count:,} through the proxy)",
                                          "time to open all", "s",
                                          [r["open_seconds"] for r in d if r.get("opened")],
                                          [r["open_seconds"] for r in p if r.get("opened")]))

    def idle_proxy(self) -> dict:
        s = self.settings
        p = self.proxy("idle", pool={"max_size": 4}, proxy={"max_client_connections": s.idle_count + 100})
        try:
            return self._hold_idle(p.port, p.pid, s.idle_count, "idle_proxy", proxy=p)
        finally:
            p.stop()

    def idle_direct(self) -> dict:
        s = self.settings
        return self._hold_idle(self.server.port, self.server.pid, s.idle_direct_count, "idle_direct")

    def _hold_idle(self, port: int, pid: int, count: int, series: str, proxy: ProxyProcess | None = None) -> dict:
        s = self.settings
        procs = max(1, min(s.idle_procs, count // 100 or 1))
        shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
        gens = [IdleLoadgen(port, n) for n in shares]
        result: dict[str, Any] = {"count": count, "procs": procs}
        try:
            for g in gens:
                ready = g.read(60)
                if not ready.get("ready"):
                    raise RuntimeError(f"idle load generator not ready: {ready}")
            time.sleep(0.5)
            before = tree_rss(pid)
            with RssSampler(pid, 0.1) as sampler:
                for g in gens:
                    g.send("go")
                opened = [g.read(300) for g in gens]
                time.sleep(1.0)
            after = tree_rss(pid)
            errors = [o for o in opened if o.get("error") or o.get("failed")]
            total = sum(o.get("opened", 0) for o in opened)
            starts = [o["started_at"] for o in opened if "started_at" in o]
            ends = [o["done_at"] for o in opened if "done_at" in o]
            result.update(opened=total, rss_before=before, rss_after=after,
                          per_conn_kib=(after - before) / total / KiB if total else None,
                          open_seconds=(max(ends) - min(starts)) if starts and ends else None,
                          failed=sum(o.get("failed", 0) for o in opened),
                          error_samples=[e for o in errors for e in o.get("error_samples", [o.get("error")])][:5])
            if proxy is not None:
                m = proxy.metrics()
                result["proxy_reported_clients"] = m.get("mysqlpool_client_connections")
                if result["proxy_reported_clients"] is None:
                    result["proxy_reported_clients"] = sum(v for k, v in m.items()
                                                           if k.startswith("mysqlpool_client_connections{"))
            self.series.setdefault(series, []).append(
                [(round(t, 2), rss) for t, rss in sampler.samples])
            if result["failed"]:
                self.fail("idle", series, f"{result['failed']} connections failed: {result['error_samples']}")
            self.log(f"    {total:,} idle connections in {result['open_seconds']:.1f}s, "
                     f"{result['per_conn_kib']:.1f} KiB each" if total else "    no connection opened")
        finally:
            for g in gens:
                g.close()
        return result

    # -- a large result ---------------------------------------------------------------------------

    def large(self) -> None:
        s = self.settings
        self.prepare_large_table()
        sql = "SELECT id, k, c FROM big"
        p = self.proxy("large", pool={"max_size": 4, "result_buffer_bytes": s.result_buffer_bytes})
        try:
            baseline = p.rss()  # started, one login and query done (the readiness check)
            self.raw["large_baseline_rss"] = baseline
            peaks: dict[str, list[int]] = {"fast": [], "slow": [], "cli": []}

            def through_proxy(kind: str, fn: Callable[[], dict]) -> dict:
                with RssSampler(p.pid, 0.02) as sampler:
                    r = fn()
                r["proxy_peak_rss"] = sampler.peak
                peaks[kind].append(sampler.peak)
                self.series.setdefault(f"large_{kind}", []).append(
                    [(round(t, 3), rss) for t, rss in sampler.samples[::2]])
                return r

            def pymysql_leg(port: int, slow: bool) -> dict:
                opts = {"sql": sql}
                if slow:
                    opts.update(pause_every=s.slow_pause_every, pause=s.slow_pause)
                r = run_loadgen("large", port, 900, **opts)
                if r.get("error") or r.get("rows") != s.large_rows:
                    raise RuntimeError(f"{r.get('rows')} of {s.large_rows:,} rows: {r.get('error')}")
                r["rows_per_s"] = r["rows"] / r["seconds"]
                return r

            fast = self.alternate("large (PyMySQL)", {
                "direct": lambda: pymysql_leg(self.server.port, False),
                "proxy": lambda: through_proxy("fast", lambda: pymysql_leg(p.port, False))})
            cli = None
            mariadb = _find_mariadb_client()
            if mariadb:
                cli = self.alternate("large (mariadb --quick)", {
                    "direct": lambda: _cli_leg(mariadb, self.server.port, sql, s.large_rows),
                    "proxy": lambda: through_proxy("cli", lambda: _cli_leg(mariadb, p.port, sql, s.large_rows))})
            slow = self.alternate("large, slow client", {
                "direct": lambda: pymysql_leg(self.server.port, True),
                "proxy": lambda: through_proxy("slow", lambda: pymysql_leg(p.port, True))})
            self.raw["large"] = {"fast": fast, "cli": cli, "slow": slow, "baseline_rss": baseline,
                                 "result_buffer_bytes": s.result_buffer_bytes,
                                 "net_write_timeout": self.server.get_global("net_write_timeout")}
        finally:
            p.stop()
        label = f"large result ({s.large_rows:,} rows)"
        self.rows.append(Row.from_samples(f"{label}, PyMySQL SSCursor", "rows/s", "rows/s",
                                          [r["rows_per_s"] for r in fast["direct"]],
                                          [r["rows_per_s"] for r in fast["proxy"]], target=LARGE_RATIO))
        if cli is not None:
            self.rows.append(Row.from_samples(f"{label}, mariadb --quick (C client)", "rows/s", "rows/s",
                                              [r["rows_per_s"] for r in cli["direct"]],
                                              [r["rows_per_s"] for r in cli["proxy"]], target=LARGE_RATIO))
        buffer_mib = s.result_buffer_bytes / MiB
        bound = Target("proxy_max", 2 * buffer_mib, "MiB")
        growth_fast = [(x - baseline) / MiB for x in peaks["fast"] + peaks["cli"]]
        growth_slow = [(x - baseline) / MiB for x in peaks["slow"]]
        self.rows.append(Row(f"{label}, fast clients", "proxy peak RSS growth", "MiB", None,
                             max(growth_fast) if growth_fast else None, samples={"proxy": growth_fast},
                             note=f"peak over all fast runs above the RSS before the first one "
                                  f"({baseline / MiB:.1f} MiB); result_buffer_bytes = {buffer_mib:g} MiB"))
        rows_slow = s.large_rows / (s.slow_pause_every or 1) * s.slow_pause
        completed = all(r.get("rows") == s.large_rows for r in slow["direct"] + slow["proxy"]) and bool(slow["proxy"])
        self.rows.append(Row(f"{label}, slow client", "proxy peak RSS growth", "MiB", None,
                             max(growth_slow) if growth_slow else None, samples={"proxy": growth_slow},
                             target=bound,
                             note=f"the client sleeps {s.slow_pause:g}s every {s.slow_pause_every:,} rows "
                                  f"(≈{rows_slow:.0f}s of sleep); server net_write_timeout = "
                                  f"{self.raw['large']['net_write_timeout']}s; target: at most twice "
                                  f"result_buffer_bytes ({buffer_mib:g} MiB); all rows arrived without error "
                                  f"on both paths: {'yes' if completed else 'NO'}"))
        self.rows.append(Row.from_samples(f"{label}, slow client", "rows/s", "rows/s",
                                          [r["rows_per_s"] for r in slow["direct"]],
                                          [r["rows_per_s"] for r in slow["proxy"]]))

    # -- mixed ---------------------------------------------------------------------------------------

    def mixed(self) -> None:
        s = self.settings
        if not self.sysbench:
            self.rows.append(Row("mixed (oltp_read_write)", "transactions/s", "tx/s", available=False,
                                 note="sysbench is not installed (apt-get install sysbench)"))
            return
        n = s.mixed_clients
        p = self.proxy("mixed", pool={"max_size": s.mixed_pool})
        try:
            run = lambda port: self.sysbench_run("oltp_read_write", port, n, s.mixed_seconds,  # noqa: E731
                                                 ps_mode=s.mixed_ps_mode)
            samples = self.alternate("mixed", {"direct": lambda: run(self.server.port),
                                               "proxy": lambda: run(p.port)})
        finally:
            p.stop()
        self.raw["mixed"] = {k: [r.to_json() for r in v] for k, v in samples.items()}
        d, px = samples["direct"], samples["proxy"]
        label = f"mixed: oltp_read_write, {n} clients, pool {s.mixed_pool}"
        errors = sum(r.ignored_errors for r in px)
        self.rows.append(Row.from_samples(label, "transactions/s", "tx/s", [r.tps for r in d], [r.tps for r in px],
                                          note=f"--db-ps-mode={s.mixed_ps_mode}; ignored errors (deadlocks) "
                                               f"direct {sum(r.ignored_errors for r in d)}, proxy {errors}"))
        self.rows.append(Row.from_samples(label, "latency avg", "ms", [r.latency_avg_ms for r in d],
                                          [r.latency_avg_ms for r in px]))
        self.rows.append(Row.from_samples(label, "latency p99", "ms", [r.latency_pct_ms for r in d],
                                          [r.latency_pct_ms for r in px]))


# -- small helpers --------------------------------------------------------------------------------

def clients_label(n: int) -> str:
    return "1 client" if n == 1 else f"{n} clients"


def _ops_of(sample: Any) -> int | None:
    """Operations a leg did (queries, requests, rows), if its result says."""
    if isinstance(sample, sb.SysbenchResult):
        return sample.queries or None
    if isinstance(sample, dict):
        for key in ("queries", "ops", "rows"):
            if isinstance(sample.get(key), (int, float)) and sample[key]:
                return int(sample[key])
    return None


def _sb_point(r: sb.SysbenchResult) -> dict:
    return {"qps": r.qps, "tps": r.tps, "queries": r.queries, "avg_ms": r.latency_avg_ms, "p50_ms": r.latency_p50_ms,
            "p99_ms": r.latency_pct_ms if r.percentile == 99 else None, "errors": r.ignored_errors,
            "reconnects": r.reconnects}


def _sb_point_json(data: dict) -> dict:
    return {"qps": data.get("qps"), "avg_ms": data.get("latency_avg_ms")}


def _merge_loadgen(results: list[dict]) -> dict:
    """One sample from several load-generator processes: summed ops, merged latencies."""
    bad = [r for r in results if "hist" not in r]
    if bad:
        raise RuntimeError(bad[0].get("error", f"load generator failed: {bad[0]}"))
    hist = LatencyHistogram()
    for r in results:
        hist.merge(LatencyHistogram.from_json(r["hist"]))
    ops = sum(r["ops"] for r in results)
    seconds = max(r["seconds"] for r in results)
    if not ops:
        raise RuntimeError(f"no request completed: {[r.get('error_samples') for r in results]}")
    return {"qps": ops / seconds if seconds else None, "ops": ops, "seconds": seconds,
            "avg_ms": hist.mean_ms(), "p50_ms": hist.percentile_ms(50), "p99_ms": hist.percentile_ms(99),
            "errors": sum(r.get("errors", 0) for r in results),
            "error_samples": [e for r in results for e in r.get("error_samples", [])][:5],
            "procs": len(results)}


def _find_mariadb_client() -> str | None:
    import shutil

    return shutil.which("mariadb") or shutil.which("mysql")


def _cli_leg(client: str, port: int, sql: str, expected_rows: int) -> dict:
    """The C client, unbuffered (--quick), output counted and thrown away."""
    cmd = [client, "--no-defaults", "--quick", "--batch", "--skip-column-names", "--protocol=TCP",
           "-h", "127.0.0.1", "-P", str(port), "-u", BENCH_USER, f"-p{BENCH_PASSWORD}", BENCH_DB, "-e", sql]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows = 0
    while chunk := proc.stdout.read(1 << 20):
        rows += chunk.count(b"\n")
    err = proc.stderr.read().decode(errors="replace")
    code = proc.wait()
    elapsed = time.perf_counter() - started
    if code != 0 or rows != expected_rows:
        raise RuntimeError(f"mariadb client exited {code} after {rows:,} rows: {err.strip()[-500:]}")
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed}


def server_options(settings: Settings) -> dict[str, Any]:
    """The private server's options for the bench (on top of tests/support/mariadb.py's defaults)."""
    return {
        "max_connections": settings.server_max_connections,
        "innodb_buffer_pool_size": "512M",
        "net_write_timeout": 10,
        "max_prepared_stmt_count": 100_000,
    }
