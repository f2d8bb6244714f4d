# Django's own test suite through the proxy (issue 10, item 19): runs
# scripts/django-compat.py, which runs the database-heavy apps of the
# installed Django's test suite with mysqlclient, once straight to a private
# MariaDB and once through a real mysqlpool-proxy process (transaction
# pooling, max_size 4), and fails listing every test that passes directly but
# not through the proxy, under the error it got through the proxy. Tests that
# fail both ways (what this MariaDB lacks) are only counted.
#
# The whole comparison takes a few minutes; the sdist is downloaded once per
# checkout into .cache/django-compat.
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")
pytest.importorskip("MySQLdb")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "django-compat.py"
COMPARISON_TIMEOUT = 1800  # seconds; each of the two Django runs has its own bound inside (RUN_TIMEOUT)
EXIT_REGRESSIONS = 1
ENOUGH_TESTS = 1000  # the default apps have several thousand tests: fewer means the harness broke


@pytest.mark.timeout(COMPARISON_TIMEOUT + 60)
def test_every_django_test_that_passes_directly_passes_through_the_proxy(tmp_path):
    workdir = tmp_path / "django-compat"
    done = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=COMPARISON_TIMEOUT)
    output = done.stdout
    assert done.returncode in (0, EXIT_REGRESSIONS), f"the comparison could not be made:\n{output[-6000:]}"
    report = json.loads((workdir / "report.json").read_text())

    direct = report["runs"]["direct"]
    assert direct["counts"].get("pass", 0) >= ENOUGH_TESTS, f"too few tests ran directly:\n{output[-6000:]}"
    assert report["regressions"] == [], (
        f"{len(report['regressions'])} Django test(s) pass directly but not through the proxy "
        f"(full tracebacks: {workdir / 'report.json'}):\n{output}")
    assert done.returncode == 0, output
