"""What stops a start, through the real command (python -m mysqlpool_proxy in a subprocess).

Each problem is one line naming the key, its value, where the value came from (the file, an
environment variable, an option) and what to do; the exit status is 2; with log.format = "json"
every line is a JSON object; --check-config finds the same problems before a start. No MariaDB is
needed: all of this happens before the proxy talks to a server (backend.port points at a port
nothing listens on, so a proxy that does start just keeps retrying).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.net import free_port

NOT_HERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine
LISTENERS = ("proxy", "admin", "metrics")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQLPOOL_")}
    return {**env, **extra}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mysqlpool_proxy", *args], cwd=cwd,
                          env=env if env is not None else clean_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def config_text(**listen: str) -> str:
    """Every listener on a free port (admin on, so that it listens), unless given; a backend nobody runs."""
    sections = {name: listen.get(name, "127.0.0.1:0") for name in LISTENERS}
    return (f'[proxy]\nlisten = "{sections["proxy"]}"\n'
            f'[admin]\nlisten = "{sections["admin"]}"\npassword = "adminpw"\n'
            f'[metrics]\nlisten = "{sections["metrics"]}"\n'
            f'[backend]\nhost = "127.0.0.1"\nport = {free_port()}\n'
            '[[users]]\nname = "app"\npassword = "pw"\n')


def write(tmp_path: Path, text: str, log_format: str = "text") -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text + f'[log]\nformat = "{log_format}"\n')
    return path


@pytest.fixture
def busy_port():
    """A port some other process (here: this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def problem_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if "cannot start: " in line]


# -- binds: port in use, address not on this machine -------------------------------------------

@pytest.mark.parametrize("key", LISTENERS)
@pytest.mark.parametrize("mode", ["start", "check"])
def test_a_port_in_use_is_one_line_naming_key_value_and_file(tmp_path, busy_port, key, mode):
    value = f"127.0.0.1:{busy_port}"
    path = write(tmp_path, config_text(**{key: value}))
    result = run(*(["--check-config"] if mode == "check" else []), "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    expected = (f"cannot start: {key}.listen = '{value}' (set in {path}): port {busy_port} is already in use "
                f"(`ss -ltnp 'sport = :{busy_port}'` shows by which process); stop that process, or set "
                f"{key}.listen to a free port")
    (line,) = problem_lines(result.stderr)
    if mode == "check":
        assert (line, result.stdout) == (expected, "")
    else:  # a log line: time, level, logger, the message, then its fields
        assert f" ERROR mysqlpool.app: {expected} key={key}.listen" in line


@pytest.mark.parametrize("key", LISTENERS)
def test_an_address_not_on_this_machine_is_named(tmp_path, key):
    path = write(tmp_path, config_text(**{key: f"{NOT_HERE}:6033"}))
    for args in (["--check-config", "-c", str(path)], ["-c", str(path)]):
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        (line,) = problem_lines(result.stderr)
        assert (f"{key}.listen = '{NOT_HERE}:6033' (set in {path}): {NOT_HERE} is not an address of this "
                f"machine (`ip -brief address` lists them); use one of those, 127.0.0.1 for this machine "
                f"only, or 0.0.0.0 for all") in line


def test_a_value_from_the_environment_names_the_variable(tmp_path, busy_port):
    path = write(tmp_path, config_text())
    env = clean_env(MYSQLPOOL_METRICS_LISTEN=f"127.0.0.1:{busy_port}")
    result = run("-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2
    (line,) = problem_lines(result.stderr)
    assert (f"metrics.listen = '127.0.0.1:{busy_port}' (set by the environment variable MYSQLPOOL_METRICS_LISTEN, "
            f"instead of '127.0.0.1:0' in {path}): port {busy_port} is already in use") in line


def test_check_config_reports_every_problem_at_once(tmp_path, busy_port):
    path = write(tmp_path, config_text(proxy=f"127.0.0.1:{busy_port}", metrics=f"{NOT_HERE}:9106"))
    result = run("--check-config", "-c", str(path), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    keys = [line.split(" = ")[0].removeprefix("cannot start: ") for line in problem_lines(result.stderr)]
    assert keys == ["proxy.listen", "metrics.listen"]


def test_check_config_closes_what_it_bound(tmp_path):
    port = free_port()
    path = write(tmp_path, config_text(proxy=f"127.0.0.1:{port}"))
    assert run("--check-config", "-c", str(path), cwd=tmp_path).returncode == 0
    with socket.socket() as sock:  # free again at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_no_bind_check_skips_the_binds(tmp_path, busy_port):
    path = write(tmp_path, config_text(proxy=f"127.0.0.1:{busy_port}"))
    result = run("--check-config", "--no-bind-check", "-c", str(path), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"config OK: {path}\n"), result.stderr


def test_with_several_workers_each_workers_port_is_tried_before_any_starts(tmp_path):
    base, taken = ports_with_the_next_one_taken()
    with taken:
        text = config_text(metrics=f"127.0.0.1:{base}", admin="").replace("[proxy]\n", "[proxy]\nworkers = 2\n")
        path = write(tmp_path, text)
        result = run("-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = problem_lines(result.stderr)
    assert (f"metrics.listen = '127.0.0.1:{base}' (set in {path}): worker 1 listens on the configured "
            f"port + 1, {base + 1}; port {base + 1} is already in use") in line
    assert "worker 0 started" not in result.stderr  # nothing was forked


def ports_with_the_next_one_taken() -> tuple[int, socket.socket]:
    """A free port P, and a listening socket on P + 1 (worker 1's metrics port)."""
    for _ in range(20):
        base = free_port()
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", base + 1))
        except OSError:
            sock.close()
            continue
        sock.listen()
        return base, sock
    raise AssertionError("no free pair of ports")


# -- Unix sockets -------------------------------------------------------------------------------

def test_a_unix_socket_another_process_listens_on_is_not_taken_over(tmp_path):
    sock_path = tmp_path / "p.sock"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(sock_path))
        other.listen()
        inode = sock_path.stat().st_ino
        path = write(tmp_path, config_text(proxy=f"unix:{sock_path}"))
        for args in (["--check-config", "-c", str(path)], ["-c", str(path)]):
            result = run(*args, cwd=tmp_path)
            assert result.returncode == 2, result.stderr
            (line,) = problem_lines(result.stderr)
            assert (f"proxy.listen = 'unix:{sock_path}' (set in {path}): a process already listens on "
                    f"{sock_path}; stop it, or set proxy.listen to another path") in line
        assert sock_path.stat().st_ino == inode  # still the other process's socket, not replaced


def test_a_unix_socket_in_a_missing_folder(tmp_path):
    path = write(tmp_path, config_text(admin=f"unix:{tmp_path}/missing/admin.sock"))
    result = run("--check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = problem_lines(result.stderr)
    assert f"the folder {tmp_path}/missing does not exist; create it" in line


# -- the backend host, TLS files ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["start", "check"])
def test_a_backend_host_that_does_not_resolve(tmp_path, mode):
    path = write(tmp_path, config_text().replace('host = "127.0.0.1"', 'host = "no-such-db.invalid"'))
    result = run(*(["--check-config"] if mode == "check" else []), "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = problem_lines(result.stderr)
    assert (f"backend.host = 'no-such-db.invalid' (set in {path}): the name does not resolve") in line
    assert "use the server's IP address, or a name this machine resolves" in line


@pytest.mark.parametrize("mode", ["start", "check"])
def test_a_key_that_does_not_match_its_certificate(tmp_path, tls_files, mode):
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-out", str(other)], check=True, capture_output=True, timeout=60)
    text = config_text().replace("[proxy]\n", f'[proxy]\ntls_cert = "{tls_files.cert}"\ntls_key = "{other}"\n')
    path = write(tmp_path, text)
    result = run(*(["--check-config"] if mode == "check" else []), "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f"config error in {path}: proxy.tls_key = '{other}' (set in {path}): this key does "
                             f"not belong to the certificate in proxy.tls_cert ('{tls_files.cert}'); give the "
                             f"key the certificate was made for\n")


@pytest.mark.parametrize("key", ["ssl_ca", "ssl_cert"])
def test_backend_tls_files_that_are_not_certificates(tmp_path, tls_files, key):
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    files = {"ssl_ca": tls_files.cert, "ssl_cert": tls_files.cert, "ssl_key": tls_files.key, key: str(junk)}
    backend = "[backend]\nssl_mode = \"required\"\n" + "".join(f'{k} = "{v}"\n' for k, v in files.items())
    path = write(tmp_path, config_text().replace("[backend]\n", backend))
    result = run("-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"config error in {path}: backend.{key} = '{junk}' (set in {path}): not a PEM" in result.stderr


# -- JSON log mode ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [[], ["--check-config"]])
def test_json_mode_writes_json_lines_only(tmp_path, busy_port, args):
    path = write(tmp_path, config_text(proxy=f"127.0.0.1:{busy_port}"), log_format="json")
    result = run(*args, "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    (error,) = [r for r in records if r["level"] == "error"]
    assert (error["key"], error["value"], error["origin"], error["set_by"]) == (
        "proxy.listen", f"127.0.0.1:{busy_port}", "file", str(path))
    assert error["msg"].startswith("cannot start: proxy.listen")


def test_json_mode_for_a_config_that_does_not_load(tmp_path):
    path = write(tmp_path, config_text().replace("[pool]", "") + "[pool]\nmax_size = 0\n", log_format="json")
    for args in ([], ["--check-config"]):
        result = run(*args, "-c", str(path), cwd=tmp_path)
        assert result.returncode == 2
        (record,) = [json.loads(line) for line in result.stderr.splitlines()]
        assert record["level"] == "error"
        assert record["msg"] == f"config error in {path}: pool.max_size must be an integer >= 1, got 0"


# -- a start that works: the settings from the environment are named ---------------------------------

def start_until_listening(path: Path, env: dict[str, str], deadline: float = 30) -> list[str]:
    """Start the proxy, read its log until it listens, stop it with SIGTERM; its log lines."""
    proc = subprocess.Popen([sys.executable, "-m", "mysqlpool_proxy", "-c", str(path)], env=env,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "listening on" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert any("listening on" in line for line in lines), lines
    return lines


def test_the_start_names_the_settings_from_the_environment_and_what_they_override(tmp_path):
    path = write(tmp_path, config_text(), log_format="json")
    port = free_port()
    env = clean_env(MYSQLPOOL_PROXY_LISTEN=f"127.0.0.1:{port}", MYSQLPOOL_POOL_MAX_SIZE="3",
                    MYSQLPOOL_USERS_0_PASSWORD="from-env")
    records = [json.loads(line) for line in start_until_listening(path, env)]
    (line,) = [r for r in records if "from the environment" in r["msg"]]
    assert line["level"] == "warning"  # some override the file
    assert line["msg"] == (
        f"3 settings from the environment, 2 overriding {path}: "
        f"pool.max_size = 3 (MYSQLPOOL_POOL_MAX_SIZE), "
        f"proxy.listen = '127.0.0.1:{port}' (MYSQLPOOL_PROXY_LISTEN, instead of '127.0.0.1:0' in the file), "
        f"users[0].password = *** (MYSQLPOOL_USERS_0_PASSWORD, instead of *** in the file)")
    assert line["overriding"] == ["proxy.listen", "users[0].password"]
    assert {"key": "users[0].password", "env": "MYSQLPOOL_USERS_0_PASSWORD"} in line["from_env"]
    assert "from-env" not in json.dumps(records) and '"pw"' not in json.dumps(records)


def test_settings_the_file_does_not_set_are_an_info_line(tmp_path):
    path = write(tmp_path, config_text())
    lines = start_until_listening(path, clean_env(MYSQLPOOL_POOL_MAX_SIZE="3"))
    (line,) = [x for x in lines if "from the environment" in x]
    assert " INFO mysqlpool.config: 1 setting from the environment: pool.max_size = 3 (MYSQLPOOL_POOL_MAX_SIZE)" in line


def test_no_line_without_settings_from_the_environment(tmp_path):
    lines = start_until_listening(write(tmp_path, config_text()), clean_env())
    assert not [x for x in lines if "environment" in x]
    assert not [x for x in lines if " WARNING " in x], lines  # the default config starts without a warning


def test_json_mode_check_config_ok_is_json_too(tmp_path):
    path = write(tmp_path, config_text(), log_format="json")
    result = run("--check-config", "-c", str(path), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {"msg": "config OK", "config": str(path)}


def test_the_open_files_limit_is_raised_for_clients_backends_and_connections_logging_in(tmp_path, monkeypatch):
    import resource

    from mysqlpool_proxy import app
    from mysqlpool_proxy.client.constants import MAX_LOGGING_IN
    from mysqlpool_proxy.config import load_config

    path = tmp_path / "config.toml"
    path.write_text('[proxy]\nmax_client_connections = 500\n[backend]\nmax_connections = 20\n'
                    '[pool]\nmax_size = 10\n[[users]]\nname = "app"\npassword = "pw"\n')
    config = load_config(str(path))
    set_to = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 1 << 20))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: set_to.append(limits))
    app._raise_open_files_limit(config)
    assert set_to == [(500 + MAX_LOGGING_IN + 20 + 64, 1 << 20)]
