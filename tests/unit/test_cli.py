"""Tests of the mysqlpool-proxy command (python -m mysqlpool_proxy)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types

import pytest

from mysqlpool_proxy import __version__, cli

GOOD = '[[users]]\nname = "app"\npassword = "pw"\n'


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    return {**env, **extra}


def run(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mysqlpool_proxy", *args], cwd=cwd,
                          env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_version(tmp_path):
    result = run("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"mysqlpool-proxy {__version__}\n")


def test_check_config_ok(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    result = run("--check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"config OK: {path}\n"
    assert "warning: the admin console is off" in result.stderr


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
                    MYSQLPOOL_ADMIN_LISTEN="")
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
