# The wheels, built from the source as `pip wheel .` / `python -m build` build
# them (the build requirements fetched from the package index into an
# isolated environment): by default the hot path compiled with mypyc (a wheel
# for this Python and platform, its modules extensions), with
# MYSQLPOOL_PROXY_COMPILE=0, or where no C compiler is found, pure Python
# (py3-none-any). Each is installed away
# from the source tree, says which build it is (-V), carries the example
# config, and serves a query from a real MariaDB.
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pymysql
import pytest

from mysqlpool_proxy import __version__, cli
from tests.support.net import free_port
from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 900  # seconds: the compiled build type-checks and compiles some sixty modules


def build_wheel(tmp_path: Path, compile_: bool, **extra_env: str) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "MYSQLPOOL_PROXY_COMPILE"}
    env["MYSQLPOOL_PROXY_COMPILE"] = "1" if compile_ else "0"
    env.update(extra_env)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                    str(tmp_path / "dist"), str(ROOT)], check=True, timeout=BUILD_TIMEOUT, cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("mysqlpool_proxy-*.whl")
    return wheel


def install(wheel: Path, site: Path) -> dict[str, str]:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    # The installed copy and the test venv's dependencies, never the source tree.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    return {"PYTHONPATH": os.pathsep.join([str(site), *deps]), "PATH": "/usr/bin:/bin"}


def run_installed(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mysqlpool_proxy", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=True)


def serves_a_query(env: dict[str, str], cwd: Path, server) -> None:
    port = free_port()
    config = cwd / "proxy.toml"
    config.write_text(f'[proxy]\nlisten = "127.0.0.1:{port}"\n[backend]\nhost = "127.0.0.1"\nport = {server.port}\n'
                      f'[metrics]\nlisten = ""\n[admin]\nlisten = ""\n'
                      f'[[users]]\nname = "{APP_USER}"\npassword = "{APP_PASSWORD}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(config)], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def answers() -> bool:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user=APP_USER, password=APP_PASSWORD,
                                       database=APP_DB, connect_timeout=2)
            except pymysql.err.OperationalError:
                return False
            with conn, conn.cursor() as cur:
                cur.execute("SELECT 6 * 7")
                return cur.fetchone() == (42,)
        wait_until(answers, 30, "the installed proxy to answer a query")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def check_wheel(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"mysqlpool_proxy-{__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert {f"mysqlpool_proxy/{cli.EXAMPLE_CONFIG}", f"{info}/licenses/LICENSE"} <= names
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert "Project-URL: Homepage, " in metadata and "Description-Content-Type: text/markdown" in metadata
    assert "mysqlpool-proxy = mysqlpool_proxy.cli:main" in entry_points
    return names


def test_the_compiled_wheel_installs_and_serves(tmp_path, app_server):
    wheel = build_wheel(tmp_path, compile_=True)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"mysqlpool_proxy-{__version__}-{tag}-{tag}-linux_"), wheel.name
    names = check_wheel(wheel)
    assert any(n.startswith("mysqlpool_proxy/protocol/framing.") and n.endswith(".so") for n in names)
    assert "mysqlpool_proxy/protocol/framing.py" in names  # the source goes along (tracebacks, reading)
    env = install(wheel, tmp_path / "site")
    assert run_installed(env, tmp_path, "-V").stdout == f"mysqlpool-proxy {__version__} (compiled)\n"
    assert run_installed(env, tmp_path, "--print-example-config").stdout == cli.example_config()
    serves_a_query(env, tmp_path, app_server)


@pytest.mark.parametrize("how", ["asked", "no compiler"])
def test_the_pure_python_wheel_installs_and_serves(tmp_path, app_server, how):
    if how == "asked":
        wheel = build_wheel(tmp_path, compile_=False)
    else:  # the build finds no C compiler: it says so and goes on pure
        wheel = build_wheel(tmp_path, compile_=True, CC="/nonexistent/cc")
    assert wheel.name == f"mysqlpool_proxy-{__version__}-py3-none-any.whl"
    assert not [n for n in check_wheel(wheel) if n.endswith(".so")]
    env = install(wheel, tmp_path / "site")
    assert run_installed(env, tmp_path, "-V").stdout == f"mysqlpool-proxy {__version__} (pure Python)\n"
    serves_a_query(env, tmp_path, app_server)
