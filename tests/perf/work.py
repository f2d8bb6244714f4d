# The proxy's work per operation, counted rather than timed, for the
# performance regression guard (tests/perf/test_work_per_operation.py).
#
# A fixed script runs through a real Proxy whose sockets are FakeTransports
# and whose backends are FakeMySQLServers, on a virtual clock (tests/fakes/):
#   point_select      300 autocommit point selects on one connection
#   transaction       40 × BEGIN, a point select, an UPDATE, COMMIT
#   prepared_execute  200 COM_STMT_EXECUTEs of one prepared statement
#   connect           40 × connect, one point select, COM_QUIT
# Each operation first runs a few times unmeasured (backends opened, caches
# filled: start-up is not counted), then sys.setprofile counts the calls
# into mysqlpool_proxy/ code made while the measured ones run; the figure is
# calls per operation, averaged over the script. The same code gives the
# same counts on any machine (the clock is virtual, nothing waits on real
# time); only the proxy's Python changes them.
#
# What counts: every call (and coroutine resumption) of a function defined
# in mysqlpool_proxy/, except list/dict/set comprehensions (inlined from
# Python 3.12 on) and except the fakes' own use of the sans-IO helpers: a
# call into mysqlpool_proxy/protocol/ from test code (the fake server and
# client build and parse packets with them) is not the proxy's work, and
# neither is anything it calls in turn. Calls from FakeTransport methods are
# the proxy's (they stand for the event loop delivering bytes, EOF or flow
# control to its protocols).
#
# Also counted, apart: reads of enum members through their class
# (`ClientState.READY`) in the proxy's code. On Python 3.11 each one goes
# through EnumType's __getattr__ hook, about 900 instructions, more than
# most calls; the hot path reads them from module globals instead, and the
# guard checks that a point select and an execute read none.
#
#   python -m tests.perf.work            # the counts, against the baseline
#   python -m tests.perf.work --update   # write them to tests/perf/baseline.json
"""Count the calls into mysqlpool_proxy per operation of a fixed script through a Proxy on fakes."""

from __future__ import annotations

import argparse
import collections
import enum
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mysqlpool_proxy
from tests.fakes import FakeClient, FakeTransport, Rows, fake_opener, run, settle, start_proxy

BASELINE = Path(__file__).with_name("baseline.json")
TOLERANCE = 0.25  # a count may grow by this fraction of its baseline
TOP = 12  # functions kept per operation in the baseline, for the failure report

# As code objects name their files: the paths the modules were imported from (not resolved).
PACKAGE = os.path.join(os.path.dirname(mysqlpool_proxy.__file__), "")
PROTOCOL = os.path.join(PACKAGE, "protocol", "")
TESTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "")
INLINED = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>"})
TRANSPORT_CODE = frozenset(f.__code__ for f in vars(FakeTransport).values() if hasattr(f, "__code__"))

POINT_SELECT = re.compile(r"^SELECT c FROM sbtest1 WHERE id=\d+$")
ROW = Rows(["c"], [("x" * 119,)])  # sysbench's c column


class CallCounter:
    """A sys.setprofile hook counting calls into the proxy's code, by function."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.enum_reads: collections.Counter[str] = collections.Counter()  # "where Class.MEMBER" -> reads
        self._active: dict = {}  # frame -> counted?, for the package frames on the stack

    def __enter__(self) -> CallCounter:
        reads, active = self.enum_reads, self._active

        def getattribute(cls, name):  # on EnumType: every attribute read on an enum class
            value = type.__getattribute__(cls, name)
            if type(value) is cls:
                caller = sys._getframe(1)
                if active.get(caller):  # a frame of the proxy's whose calls count (see _profile)
                    code = caller.f_code
                    reads[f"{code.co_filename[len(PACKAGE):]}:{code.co_qualname} {cls.__name__}.{name}"] += 1
            return value

        self._own_getattribute = enum.EnumType.__dict__.get("__getattribute__")  # None: type's
        enum.EnumType.__getattribute__ = getattribute  # type: ignore[method-assign]
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)
        if self._own_getattribute is None:
            del enum.EnumType.__getattribute__
        else:
            enum.EnumType.__getattribute__ = self._own_getattribute  # type: ignore[method-assign]
        self._active.clear()

    def _profile(self, frame, event: str, arg) -> None:
        if event == "call":
            code = frame.f_code
            path = code.co_filename
            if not path.startswith(PACKAGE) or code.co_name in INLINED:
                return
            parent = frame.f_back
            counted = self._active.get(parent)
            if counted is None:  # entered from outside the package
                counted = not (parent is not None and path.startswith(PROTOCOL)
                               and parent.f_code.co_filename.startswith(TESTS)
                               and parent.f_code not in TRANSPORT_CODE)
            self._active[frame] = counted
            if counted:
                self.calls[f"{path[len(PACKAGE):]}:{code.co_qualname}"] += 1
        elif event == "return":
            self._active.pop(frame, None)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Measured:
    """One operation's count: calls per operation, and the functions that made them."""

    operations: int
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    enum_reads: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def per_op(self) -> float:
        return sum(self.calls.values()) / self.operations

    def top(self, n: int = TOP) -> dict[str, float]:
        return {name: round(count / self.operations, 2) for name, count in self.calls.most_common(n)}


# -- the script ---------------------------------------------------------------------------------

WARM_UP = 5


async def _select(client: FakeClient, i: int) -> None:
    r = await client.query(f"SELECT c FROM sbtest1 WHERE id={i}")
    assert r.expect_ok().rows == [("x" * 119,)], r.results


async def point_select(proxy, n: int = 300) -> Measured:
    client = await FakeClient(proxy).connect()
    for i in range(WARM_UP):
        await _select(client, i)
    with CallCounter() as counter:
        for i in range(n):
            await _select(client, i)
    client.quit()
    await settle()
    return Measured(n, counter.calls, counter.enum_reads)


async def transaction(proxy, n: int = 40) -> Measured:
    client = await FakeClient(proxy).connect()

    async def one(i: int) -> None:
        (await client.query("BEGIN")).expect_ok()
        await _select(client, i)
        (await client.query(f"UPDATE sbtest1 SET k=k+1 WHERE id={i}")).expect_ok()
        (await client.query("COMMIT")).expect_ok()
    for i in range(WARM_UP):
        await one(i)
    with CallCounter() as counter:
        for i in range(n):
            await one(i)
    client.quit()
    await settle()
    return Measured(n, counter.calls, counter.enum_reads)


async def prepared_execute(proxy, n: int = 200) -> Measured:
    client = await FakeClient(proxy).connect()
    prepared = await client.prepare("SELECT c FROM sbtest1 WHERE id=1")
    stmt = prepared.expect_ok().last.stmt_id

    async def one() -> None:
        r = await client.execute(stmt)
        assert r.expect_ok().rows == [("x" * 119,)], r.results
    for _ in range(WARM_UP):
        await one()
    with CallCounter() as counter:
        for _ in range(n):
            await one()
    client.quit()
    await settle()
    return Measured(n, counter.calls, counter.enum_reads)


async def connect(proxy, n: int = 40) -> Measured:
    async def one(i: int) -> None:
        client = await FakeClient(proxy, peer=("10.0.0.7", 40000 + i)).connect()
        await _select(client, i)
        client.quit()
        await settle()
        assert client.closed
    for i in range(WARM_UP):
        await one(i)
    with CallCounter() as counter:
        for i in range(n):
            await one(WARM_UP + i)
    return Measured(n, counter.calls, counter.enum_reads)


OPERATIONS = {"point_select": point_select, "transaction": transaction, "prepared_execute": prepared_execute,
              "connect": connect}


async def script_proxy():
    """A started Proxy whose fake backends answer the script's point select."""
    opener = fake_opener()
    opener.on(POINT_SELECT, ROW)
    return await start_proxy(opener, pool={"max_size": 4})


def measure() -> dict[str, Measured]:
    """Run the script (each operation on a proxy of its own) and count."""
    if mysqlpool_proxy.BUILD != "pure Python":
        raise RuntimeError("the guard counts the interpreted code's calls, and this mysqlpool_proxy is compiled "
                           "(scripts/compile.sh --clean; scripts/test.sh runs the guard on pure Python)")

    async def script() -> dict[str, Measured]:
        out = {}
        for name, operation in OPERATIONS.items():
            proxy = await script_proxy()
            try:
                out[name] = await operation(proxy)
            finally:
                await proxy.stop(0)
            if not out[name].calls:
                raise RuntimeError(f"{name}: no call into {PACKAGE} was seen; is mysqlpool_proxy imported "
                                   f"from somewhere else ({mysqlpool_proxy.__file__})?")
        return out

    return run(script())


# -- the baseline -------------------------------------------------------------------------------

def baseline_data(measured: dict[str, Measured]) -> dict:
    return {
        "about": "Calls into mysqlpool_proxy per operation of tests/perf/work.py's script. Update on purpose "
                 "with `python -m tests.perf.work --update` and say why in the commit message.",
        "python": sys.version.split()[0],
        "tolerance": TOLERANCE,
        "operations": {name: {"calls_per_op": round(m.per_op, 2), "top": m.top()} for name, m in measured.items()},
    }


def load_baseline(path: Path = BASELINE) -> dict:
    return json.loads(path.read_text())


@dataclass
class Comparison:
    over: list[str]  # operations over the tolerance, or missing from the baseline
    under: list[str]  # operations down by more than the tolerance: the baseline wants updating
    report: str  # every count against its baseline, and the functions of the operations over


def compare(measured: dict[str, Measured], baseline: dict) -> Comparison:
    """Each operation's count against the baseline's."""
    tolerance = baseline.get("tolerance", TOLERANCE)
    known = baseline.get("operations", {})
    over, under = [], []
    lines = [f"{'operation':<18} {'baseline':>9} {'now':>9} {'change':>8}   (calls into mysqlpool_proxy "
             f"per operation; allowed: +{tolerance:.0%})"]
    for name, m in measured.items():
        base = known.get(name, {}).get("calls_per_op")
        if not base:
            over.append(name)
            lines.append(f"{name:<18} {'-':>9} {m.per_op:>9.2f}  not in the baseline")
            continue
        change = m.per_op / base - 1
        flag = ""
        if change > tolerance:
            over.append(name)
            flag = "  OVER"
        elif change < -tolerance:
            under.append(name)
            flag = "  (less work: update the baseline to keep it)"
        lines.append(f"{name:<18} {base:>9.2f} {m.per_op:>9.2f} {change:>+8.1%}{flag}")
    for name in over:
        m = measured[name]
        before = known.get(name, {}).get("top", {})
        lines += ["", f"{name}: the functions called most per operation (baseline -> now)"]
        for fn in sorted(set(before) | set(m.top()), key=lambda f: -m.calls[f]):
            lines.append(f"  {before.get(fn, 0):7.2f} -> {m.calls[fn] / m.operations:7.2f}  {fn}")
    return Comparison(over, under, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--update", action="store_true", help=f"write the counts to {BASELINE}")
    opts = ap.parse_args(argv)
    measured = measure()
    result = compare(measured, load_baseline() if BASELINE.exists() else {})
    print(result.report)
    if opts.update:
        BASELINE.write_text(json.dumps(baseline_data(measured), indent=1) + "\n")
        print(f"\nwrote {BASELINE}: say why in the commit message")
        return 0
    for name, m in measured.items():
        print(f"\n{name}: {m.per_op:.2f} calls per operation; the functions called most:")
        for fn, count in m.top().items():
            print(f"  {count:7.2f}  {fn}")
        if m.enum_reads:
            print(f"  and {m.enum_reads.total() / m.operations:.2f} enum member reads through the class:")
            for where, count in m.enum_reads.most_common(TOP):
                print(f"  {count / m.operations:7.2f}  {where}")
    return 1 if result.over else 0


if __name__ == "__main__":
    sys.exit(main())
