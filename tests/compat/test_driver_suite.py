# The drivers' own test suites through the proxy: runs scripts/driver-compat.py,
# which runs the tests of aiomysql's sdist (PyMySQL's tests, ported to asyncio,
# on PyMySQL's packet code: PyMySQL's own sdist ships none) and of
# mysqlclient's, once straight to a private MariaDB and once through a real
# mysqlpool-proxy process (transaction pooling, max_size 4, TLS both ways),
# and fails listing every test that passes directly but not through the
# proxy with both outcomes and the error through the proxy. Tests that fail
# both ways are only counted; driver_suite.KNOWN_DIFFERENCES lists
# documented limitations with their cause.
#
# No skip for a missing sdist (no network, no pip): the comparison cannot be
# made, and the test fails saying what is missing. It needs private servers
# (TLS certificates, root's password), so MYSQL_TEST_URL mode skips it, as
# it skips every test that needs one. The whole comparison takes about a
# minute; the sdists are downloaded once per checkout into .cache/driver-compat.
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mariadb import EXTERNAL_URL_ENV, external_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "driver-compat.py"
COMPARISON_TIMEOUT = 900  # seconds; each pytest run has its own bound inside (RUN_TIMEOUT)
EXIT_REGRESSIONS = 1
ENOUGH_TESTS = {"aiomysql": 200, "mysqlclient": 150}  # passing directly; fewer means the harness broke


@pytest.mark.timeout(COMPARISON_TIMEOUT + 60)
def test_every_driver_test_that_passes_directly_passes_through_the_proxy(tmp_path):
    if external_url():
        pytest.skip(f"needs private mariadbd servers; {EXTERNAL_URL_ENV} points at an external server")
    workdir = tmp_path / "driver-compat"
    done = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=COMPARISON_TIMEOUT)
    output = done.stdout
    assert done.returncode in (0, EXIT_REGRESSIONS), f"the comparison could not be made:\n{output[-6000:]}"
    report = json.loads((workdir / "report.json").read_text())

    for leg, enough in ENOUGH_TESTS.items():
        passed = report["runs"][f"{leg} direct"]["counts"].get("pass", 0)
        assert passed >= enough, f"only {passed} {leg} tests passed directly:\n{output[-6000:]}"
    assert report["regressions"] == [], (
        f"{len(report['regressions'])} driver test(s) pass directly but not through the proxy "
        f"(full tracebacks: {workdir / 'report.json'}):\n{output}")
    assert report["stale_known_differences"] == [], output
    assert done.returncode == 0, output
