"""Tests of the mysqlpool-proxy command (python -m mysqlpool_proxy)."""

from __future__ import annotations

import logging
import os
import pty
import select
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from mysqlpool_proxy import BUILD, __version__, cli
from mysqlpool_proxy.config import load_config

GOOD = '[[users]]\nname = "app"\npassword = "pw"\n'
# --check-config binds the listeners: any free port, so that nothing else on the machine is in the way
ANY_PORT = '[proxy]\nlisten = "127.0.0.1:0"\n[metrics]\nlisten = "127.0.0.1:0"\n'


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    return {**env, **extra}


def run(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mysqlpool_proxy", *args], cwd=cwd,
                          env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_version(tmp_path):
    result = run("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"mysqlpool-proxy {__version__} ({BUILD})\n")


def test_check_config_ok(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(ANY_PORT + GOOD)
    result = run("--check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"config OK: {path}\n"
    assert result.stderr == ""  # the admin console left at its defaults is off, without a warning


def test_check_config_bad_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[pool]\nmax_size = 0\n" + GOOD)
    result = run("--check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"config error in {path}: pool.max_size must be an integer >= 1, got 0" in result.stderr
    assert result.stdout == ""


def test_check_config_missing_file(tmp_path):
    result = run("--check-config", "-c", "nope.toml", cwd=tmp_path)
    assert result.returncode == 2 and "config error in nope.toml: cannot read" in result.stderr


def test_config_path_from_env_and_env_overrides(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    env = clean_env(MYSQLPOOL_CONFIG=str(path), MYSQLPOOL_POOL_MAX_SIZ="5")
    result = run("--check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert f"config error in {path}: unknown environment variable MYSQLPOOL_POOL_MAX_SIZ" in result.stderr


def test_environment_only(tmp_path):
    env = clean_env(MYSQLPOOL_USERS_0_NAME="app", MYSQLPOOL_USERS_0_PASSWORD="pw",
                    MYSQLPOOL_ADMIN_LISTEN="", MYSQLPOOL_PROXY_LISTEN="127.0.0.1:0",
                    MYSQLPOOL_METRICS_LISTEN="127.0.0.1:0")
    if os.path.exists(cli.DEFAULT_CONFIG_PATH):
        pytest.skip(f"{cli.DEFAULT_CONFIG_PATH} exists on this machine")
    result = run("--check-config", cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "config OK: <environment>\n", "")


def test_config_error_at_start_exits_2(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[log]\nlevel = "loud"\n' + GOOD)
    result = run("-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"config error in {path}: log.level must be one of" in result.stderr


def test_bad_option_exits_2(tmp_path):
    result = run("--log-level", "loud", cwd=tmp_path)
    assert result.returncode == 2 and "--log-level" in result.stderr


def test_default_config_path(tmp_path):
    present = tmp_path / "config.toml"
    present.write_text("")
    assert cli.default_config_path({"MYSQLPOOL_CONFIG": "/x.toml"}, str(present)) == "/x.toml"
    assert cli.default_config_path({}, str(present)) == str(present)
    assert cli.default_config_path({"MYSQLPOOL_CONFIG": ""}, str(tmp_path / "absent")) is None


@pytest.fixture
def fake_app(monkeypatch):
    """Stand-in for mysqlpool_proxy.app (written elsewhere): records the config it runs."""
    calls = []
    monkeypatch.setitem(sys.modules, "mysqlpool_proxy.app",
                        types.SimpleNamespace(run=lambda config: calls.append(config) or 0))
    for name in [k for k in os.environ if k.startswith("MYSQLPOOL_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield calls
    root.handlers[:] = handlers
    root.setLevel(level)


def test_start_runs_app_with_log_overrides(tmp_path, fake_app, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[log]\nlevel = "warning"\nformat = "json"\n' + GOOD)
    assert cli.main(["-c", str(path), "--log-level", "DEBUG"]) == 0
    (config,) = fake_app
    assert (config.log.level, config.log.format, config.source) == ("debug", "json", str(path))
    assert '"msg": "config loaded"' in capsys.readouterr().err


# -- help, version, the example config ------------------------------------------------------------

def test_short_version(tmp_path):
    assert run("-V", cwd=tmp_path).stdout == f"mysqlpool-proxy {__version__} ({BUILD})\n"


def test_help_lists_signals_ports_endpoints_and_the_docs(tmp_path):
    from mysqlpool_proxy.config import AdminConfig, MetricsConfig, ProxyConfig
    from mysqlpool_proxy.ops import http

    text = run("--help", cwd=tmp_path).stdout
    for needed in ("SIGTERM", "SIGINT", "SIGHUP", ProxyConfig().listen, AdminConfig().listen,
                   MetricsConfig().listen, MetricsConfig().path, http.HEALTH_PATH, http.READY_PATH,
                   "README.md", "--print-example-config", "exit status"):
        assert needed in text, needed


def test_print_example_config_is_the_packaged_file_and_loads(tmp_path):
    result = run("--print-example-config", cwd=tmp_path)
    assert result.returncode == 0
    packaged = (Path(cli.__file__).parent / "config.example.toml").read_text()
    assert result.stdout == packaged
    path = tmp_path / "config.toml"
    path.write_text(result.stdout)
    assert load_config(str(path), {"APP_DB_PASSWORD": "x"}).users[0].name == "app"


# -- quick start: --backend, --user, --password-env, --listen ---------------------------------------

@pytest.mark.parametrize("text, settings", [
    ("127.0.0.1:3306", [("backend.host", "127.0.0.1"), ("backend.port", "3306")]),
    ("db.example.com", [("backend.host", "db.example.com")]),
    ("[::1]:3307", [("backend.host", "::1"), ("backend.port", "3307")]),
    ("[::1]", [("backend.host", "::1")]),
    ("::1", [("backend.host", "::1")]),
    ("unix:/run/mysqld/mysqld.sock", [("backend.unix_socket", "/run/mysqld/mysqld.sock")]),
])
def test_backend_option(text, settings):
    assert [(o.key, o.value) for o in cli.backend_overrides(text)] == settings
    assert {o.given_by for o in cli.backend_overrides(text)} == {"--backend"}


QUICK = ["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:3306", "--user", "app"]
QUICK_ENV = {"MYSQLPOOL_METRICS_LISTEN": "127.0.0.1:0"}  # --check-config binds it: any free port


def test_quick_start_with_the_password_from_an_environment_variable(tmp_path):
    env = clean_env(APP_PW="s3cret", **QUICK_ENV)
    result = run("--check-config", *QUICK, "--password-env", "APP_PW", cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, "config OK: <environment>\n"), result.stderr


def test_quick_start_options_name_themselves_in_errors(tmp_path):
    result = run("--check-config", *QUICK[:2], "--backend", "127.0.0.1:99999", "--user", "app",
                 "--password-env", "UNSET_VARIABLE", cwd=tmp_path, env=clean_env(**QUICK_ENV))
    assert result.returncode == 2
    assert ("config error in <environment>: backend.port must be an integer from 1 to 65535, got '99999' "
            "(from --backend)") in result.stderr
    assert ("users[0].password_env: environment variable UNSET_VARIABLE is not set (from --password-env)"
            in result.stderr)


def test_quick_start_without_a_terminal_or_a_password_variable_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mysqlpool_proxy", "--check-config", *QUICK], cwd=tmp_path,
                            env=clean_env(**QUICK_ENV), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert ("--user app needs the password of the server account 'app': name the environment variable that "
            "holds it with --password-env VAR, or run this on a terminal to be asked for it") in result.stderr


def test_quick_start_asks_for_the_password_on_a_terminal(tmp_path):
    output = run_on_terminal([sys.executable, "-m", "mysqlpool_proxy", "--check-config", *QUICK],
                             answer="typed-secret", env=clean_env(**QUICK_ENV), cwd=tmp_path)
    assert "Password of the server account 'app': " in output
    assert "config OK: <environment>" in output and "typed-secret" not in output  # not echoed


def test_quick_start_password_from_the_environment_needs_no_prompt(tmp_path):
    env = clean_env(MYSQLPOOL_USERS_0_PASSWORD="pw", **QUICK_ENV)
    result = run("--check-config", *QUICK, cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, "config OK: <environment>\n"), result.stderr


def run_on_terminal(argv: list[str], answer: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> str:
    """Run argv on a new pseudo-terminal, type `answer` at the first prompt; everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    output, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and b": " in output:
                os.write(fd, answer.encode() + b"\n")
                answered = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert answered and os.waitstatus_to_exitcode(status) == 0, output
    return output.decode(errors="replace")
