# The performance regression guard: the proxy's Python work per operation
# (calls into mysqlpool_proxy per point select, transaction, prepared
# statement execute and connection; tests/perf/work.py) against the
# committed tests/perf/baseline.json. A count, not a timing: the same on any
# machine, so a change that makes the proxy do much more per query fails
# here, and one that makes it do much less says the baseline wants updating.
# On purpose: `python -m tests.perf.work --update`, and the reason in the
# commit message.
from __future__ import annotations

import collections
import warnings

from mysqlpool_proxy.core.histogram import Histogram
from mysqlpool_proxy.protocol.framing import encode_packet
from tests.fakes import run
from tests.perf.work import BASELINE, CallCounter, Measured, compare, load_baseline, measure, point_select, script_proxy

UPDATE = "python -m tests.perf.work --update"


def test_the_work_per_operation_stays_within_the_baseline():
    result = compare(measure(), load_baseline())
    assert not result.over, (
        f"the proxy does more work per operation than {BASELINE.name} allows:\n{result.report}\n\n"
        f"If that is on purpose, run `{UPDATE}` and say why in the commit message.")
    if result.under:
        warnings.warn(f"the proxy does less work per operation than {BASELINE.name} says; run `{UPDATE}` "
                      f"to keep the gain:\n{result.report}", stacklevel=1)


def test_a_statement_reads_no_enum_member_through_its_class():
    """On Python 3.11 `ClientState.READY` costs some 900 instructions (EnumType's __getattr__ hook):
    the per-statement path reads members from module globals (`_READY`). A point select and a
    prepared execute read none; the count names any that comes back."""
    measured = measure()
    for name in ("point_select", "prepared_execute"):
        reads = measured[name].enum_reads
        assert not reads, f"{name}: enum members read through their class per operation: " + ", ".join(
            f"{where} ({count / measured[name].operations:g})" for where, count in reads.most_common())


def test_enum_reads_are_counted_where_the_proxy_makes_them():
    from mysqlpool_proxy.core.pins import Pins
    from mysqlpool_proxy.core.states import ClientState
    from mysqlpool_proxy.protocol.handshake import ChangeUserAuth

    pins = Pins()
    pins.user_variables = True
    with CallCounter() as counter:
        assert ClientState.READY.value == "ready"  # test code: not the proxy's
        ChangeUserAuth(lambda user: None, "h", b"s" * 20, 0)  # protocol/ from test code: the fakes' kind
        pins.reasons()  # the proxy's
    assert counter.enum_reads == {"core/pins.py:Pins.reasons PinReason.USER_VARIABLE": 1}
    assert "__getattribute__" not in vars(type(ClientState))  # EnumType is itself again


def test_the_counts_are_the_same_every_time():
    async def twice() -> list[collections.Counter]:
        out = []
        for _ in range(2):
            proxy = await script_proxy()
            out.append((await point_select(proxy, n=20)).calls)
            await proxy.stop(0)
        return out
    first, second = run(twice())
    assert first == second and first.total() > 0


def test_only_the_proxys_own_calls_are_counted():
    with CallCounter() as counter:
        encode_packet(b"\x03SELECT 1", 0)  # test code using a sans-IO helper, as the fakes do
    assert counter.total == 0
    with CallCounter() as counter:
        Histogram((0.5,))  # anything else of the package is the proxy's work
    assert counter.calls == {"core/histogram.py:Histogram.__init__": 1}


def _measured(per_op: float, **functions: float) -> Measured:
    calls = collections.Counter({name: int(count * 10) for name, count in functions.items()})
    calls["client.py:rest"] = int(per_op * 10) - sum(calls.values())
    return Measured(10, calls)


def test_compare_flags_an_operation_over_the_tolerance_and_shows_its_functions():
    baseline = {"tolerance": 0.25, "operations": {
        "point_select": {"calls_per_op": 80.0, "top": {"client.py:a": 4.0}},
        "connect": {"calls_per_op": 200.0, "top": {}},
        "transaction": {"calls_per_op": 300.0, "top": {}}}}
    result = compare({"point_select": _measured(160.0, **{"client.py:a": 84.0}),  # doubled
                      "connect": _measured(240.0),  # +20 %: allowed
                      "transaction": _measured(200.0),  # a third less: the baseline wants updating
                      "ping": _measured(10.0)}, baseline)  # new: not in the baseline
    assert result.over == ["point_select", "ping"] and result.under == ["transaction"]
    assert "point_select           80.00    160.00  +100.0%  OVER" in result.report
    assert "connect               200.00    240.00   +20.0%\n" in result.report
    assert "   4.00 ->   84.00  client.py:a" in result.report
