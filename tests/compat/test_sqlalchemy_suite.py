# SQLAlchemy's own test suite through the proxy: runs scripts/sqlalchemy-compat.py,
# which runs the database tests of SQLAlchemy's sdist (the MySQL dialect, the
# dialect compliance suite, inserts, types, Core and ORM transactions,
# reconnects) with PyMySQL and mysqlclient, once straight to a private
# MariaDB and once through a real mysqlpool-proxy process (transaction
# pooling, max_size 4), and fails listing every test that passes directly but
# not through the proxy with both outcomes and the error through the proxy.
# Tests that fail both ways are only counted; sqlalchemy_suite.KNOWN_DIFFERENCES
# lists documented limitations with their cause.
#
# No skip: without the sdist (no network, no pip) the comparison cannot be
# made, and the test fails saying what is missing. The whole comparison takes
# about 3 minutes; the sdist is downloaded once per checkout into
# .cache/sqlalchemy-compat.
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sqlalchemy-compat.py"
COMPARISON_TIMEOUT = 1200  # seconds; each pytest run has its own bound inside (RUN_TIMEOUT)
EXIT_REGRESSIONS = 1
ENOUGH_TESTS = {"pymysql": 2000, "mysqldb": 300}  # passing directly; fewer means the harness broke


@pytest.mark.timeout(COMPARISON_TIMEOUT + 60)
def test_every_sqlalchemy_test_that_passes_directly_passes_through_the_proxy(tmp_path):
    workdir = tmp_path / "sqlalchemy-compat"
    done = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=COMPARISON_TIMEOUT)
    output = done.stdout
    assert done.returncode in (0, EXIT_REGRESSIONS), f"the comparison could not be made:\n{output[-6000:]}"
    report = json.loads((workdir / "report.json").read_text())

    for leg, enough in ENOUGH_TESTS.items():
        passed = report["runs"][f"{leg} direct"]["counts"].get("pass", 0)
        assert passed >= enough, f"only {passed} {leg} tests passed directly:\n{output[-6000:]}"
    assert report["regressions"] == [], (
        f"{len(report['regressions'])} SQLAlchemy test(s) pass directly but not through the proxy "
        f"(full tracebacks: {workdir / 'report.json'}):\n{output}")
    assert report["stale_known_differences"] == [], output
    assert done.returncode == 0, output
