# The README's quick start, run as written: every ```sh block of the "Quick
# start" section, in order, in a copy of the repository, with a fresh HOME and
# Debian's default PATH (no project venv on it). Blocks run in one bash state
# (what a block exports, the next one sees); the proxy's foreground runs and
# the `mariadb -p` client run on a terminal (a pty), where the test types the
# password the README's CREATE USER sets, and Ctrl-C stops the proxy.
#
# What stands in for the machine, and nothing else:
#   * `sudo` runs the command as this (root) user; `apt-get install` only
#     checks that the packages are installed (scripts/test.sh installs them);
#   * the server is a private mariadbd: ~/.my.cnf points `sudo mariadb` at it
#     as root, its port replaces 3306 in the commands, and
#     MYSQLPOOL_BACKEND_PORT gives it to the config file of step 5;
#   * the proxy and metrics ports are free ports (MYSQLPOOL_PROXY_LISTEN and
#     MYSQLPOOL_METRICS_LISTEN; 6033 in the client command becomes the first).
# `pip install .` really installs the checkout and its dependencies into a
# new venv made by `python3` (Debian's), from the package index.
from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.mariadb import require_restartable
from tests.support.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
                                    ".hypothesis", ".ruff_cache", "results")
PASSED_THROUGH = re.compile(r"(?i)^(https?_proxy|no_proxy|pip_.*|ssl_cert_.*|requests_ca_bundle|lang|lc_all)$")
STEP_TIMEOUT = 600.0  # seconds for one block (pip install downloads the dependencies)
START_TIMEOUT = 30.0  # seconds for the proxy to listen


def quick_start_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Quick start\n"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def commands_of(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def is_proxy_run(block: str) -> bool:
    lines = commands_of(block)
    return len(lines) == 1 and lines[0].startswith("mysqlpool-proxy ") and not re.search(
        r"--check-config|--print-example-config|-V\b|--version|--help", lines[0])


def is_password_client(block: str) -> bool:
    lines = commands_of(block)
    return len(lines) == 1 and lines[0].startswith("mariadb ") and " -p " in lines[0]


class Terminal:
    """A command on a pseudo-terminal; its output is collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        self.output = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.status: int | None = None

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                chunk = os.read(self.fd, 4096) if ready else b""
            except OSError:
                return
            if ready and not chunk:
                return
            with self._lock:
                self.output += chunk

    def text(self) -> str:
        with self._lock:
            return self.output.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout}s; output:\n{self.text()}")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def poll(self) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"still running after {timeout}s; output:\n{self.text()}")
            time.sleep(0.05)
        self._reader.join(5)
        return self.status

    def close(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


class Shell:
    """Runs README blocks as the person would, one bash state carried from block to block."""

    def __init__(self, tmp_path: Path, server, proxy_port: int, metrics_port: int):
        self.home, self.shims, self.checkout = tmp_path / "home", tmp_path / "shims", tmp_path / "checkout"
        self.state = tmp_path / "state.sh"
        self.server, self.proxy_port = server, proxy_port
        self.home.mkdir()
        self.state.write_text("")
        shutil.copytree(ROOT, self.checkout, ignore=NOT_COPIED, symlinks=True)
        (self.home / ".my.cnf").write_text(f"[client]\nhost=127.0.0.1\nport={server.port}\nuser=root\n")
        self._shims()
        self.env = {k: v for k, v in os.environ.items() if PASSED_THROUGH.match(k)}
        self.env.update(HOME=str(self.home), PATH=f"{self.shims}:{DEBIAN_PATH}", TERM="dumb",
                        MYSQLPOOL_PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
                        MYSQLPOOL_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
                        MYSQLPOOL_BACKEND_PORT=str(server.port))
        self.env.setdefault("LANG", "C.UTF-8")

    def _shims(self) -> None:
        self.shims.mkdir()
        (self.shims / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (self.shims / "apt-get").write_text(
            '#!/bin/sh\n# Stands in for apt-get install: the packages must be installed already.\n'
            '[ "$1" = install ] || { echo "apt-get stand-in: only install" >&2; exit 1; }\nshift\n'
            'for p in "$@"; do case "$p" in -*) continue;; esac\n'
            '  dpkg -s "$p" >/dev/null 2>&1 || { echo "not installed: $p" >&2; exit 1; }\ndone\n')
        for shim in self.shims.iterdir():
            shim.chmod(0o755)

    def localize(self, command: str) -> str:
        """The command with this machine's ports for the README's 3306 and 6033."""
        command = command.replace("127.0.0.1:3306", f"127.0.0.1:{self.server.port}")
        return command.replace("-P 6033", f"-P {self.proxy_port}")

    def run(self, block: str, stdin: str = "") -> str:
        script = f"set -e\nsource {self.state}\n{self.localize(block)}\nexport -p > {self.state}\n"
        done = subprocess.run(["bash", "-c", script], cwd=self.checkout, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT)
        assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def on_terminal(self, block: str) -> Terminal:
        (command,) = commands_of(self.localize(block))
        return Terminal(["/bin/bash", "-c", f"source {self.state}; exec {command}"], self.env, self.checkout)


def test_the_quick_start_works_as_written(tmp_path, mariadb_factory):
    server = mariadb_factory()
    require_restartable(server)  # it creates the database and the account itself
    blocks = quick_start_blocks()
    password = re.search(r"IDENTIFIED BY '([^']+)'", "".join(blocks))[1]
    shell = Shell(tmp_path, server, free_port(), free_port())
    outputs: list[str] = []
    for block in blocks:
        if is_proxy_run(block):
            outputs.append(run_proxy_until_a_client_got_through(shell, block, password, blocks))
        elif is_password_client(block):
            continue  # run by the proxy step before it, while that proxy runs
        else:
            outputs.append(shell.run(block, stdin=password + "\n"))
    assert re.search(r"mysqlpool-proxy \d+\.\d+\.\d+", outputs[0])  # step 1 ends with mysqlpool-proxy -V
    assert any("config OK: mysqlpool.toml" in out.splitlines() for out in outputs)
    assert sum(1 for b in blocks if is_proxy_run(b)) == 2  # the quick one, then with the config file


def run_proxy_until_a_client_got_through(shell: Shell, block: str, password: str, blocks: list[str]) -> str:
    """Start the proxy of `block` on a terminal, answer its password prompt, run the README's client
    command against it, then Ctrl-C; the proxy's output."""
    (client_block,) = [b for b in blocks if is_password_client(b)]
    proxy = shell.on_terminal(block)
    try:
        if "--user" in block:
            proxy.wait_for(r"Password of the server account 'app': ", START_TIMEOUT)
            proxy.type(password + "\n")
        proxy.wait_for(r"listening on 127\.0\.0\.1:\d+", START_TIMEOUT)
        client = shell.on_terminal(client_block)
        try:
            client.wait_for(r"Enter password:", START_TIMEOUT)
            client.type(password + "\n")
            assert client.wait(START_TIMEOUT) == 0, client.text()
            assert "through the proxy" in client.text() and "MariaDB" in client.text(), client.text()
        finally:
            client.close()
        proxy.type("\x03")  # Ctrl-C
        assert proxy.wait(START_TIMEOUT) == 0, proxy.text()
        output = proxy.text()
    finally:
        proxy.close()
    assert password not in output
    problems = [line for line in output.splitlines() if " WARNING " in line or " ERROR " in line]
    # The only warning: the test's own MYSQLPOOL_PROXY_LISTEN overrides the config file's listen.
    assert all("settings from the environment" in line and "overriding" in line for line in problems), output
    return output
