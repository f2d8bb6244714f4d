# Throwaway MariaDB servers for tests.
#
# MariaDBServer owns one private `mariadbd` process: its own datadir, unix
# socket, error log and a free 127.0.0.1 port, all inside a temp folder that
# is deleted when the server is closed. `mariadb-install-db` runs ONCE per
# process (the "template" datadir); every server copies the template, so a
# start costs about as much as InnoDB's startup (well under a second).
#
# ExternalServer offers the same SQL helpers for a server named by the
# MYSQL_TEST_URL environment variable; it cannot start/stop/kill/restart it,
# applies "server options" with SET GLOBAL, and undoes its changes on close().
# start_server() picks one of the two; require_restartable() skips a test
# that needs a private server when MYSQL_TEST_URL is set.
#
# Cleanup: close() (called by the fixtures) stops the process and removes its
# folder; an atexit hook kills anything still alive and removes the session
# folder; SIGTERM is turned into KeyboardInterrupt so pytest runs finalisers;
# and folders left by a session that was SIGKILLed are reaped by the next one.
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pymysql

INSTALL_COMMAND = "apt-get install -y mariadb-server mariadb-client"
EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin")
EXTERNAL_URL_ENV = "MYSQL_TEST_URL"
LOOPBACK = "127.0.0.1"

STARTUP_TIMEOUT = 30.0  # seconds until a started server must accept queries
STOP_TIMEOUT = 30.0  # seconds a clean shutdown may take before SIGKILL
REAP_TIMEOUT = 10.0  # seconds to wait for a SIGKILLed process to disappear
INSTALL_DB_TIMEOUT = 120.0  # seconds for mariadb-install-db
RESTART_PORT_WAIT = 10  # seconds mariadbd waits for its old port on restart
BIND_RETRIES = 3  # fresh ports to try when a free port was taken meanwhile

SESSION_PREFIX = "mdbtest-"
CLIENT_ERRORS_CONNECTION_LOST = (2006, 2013)

# Defaults that make a server start fast and behave like a small real one.
# Callers override them by name; a value of None removes the option.
DEFAULT_OPTIONS: dict[str, Any] = {
    "log_bin": False,
    "skip_name_resolve": True,
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "8M",
    "innodb_use_native_aio": 0,  # io_uring/libaio are often blocked in containers
    "innodb_doublewrite": 0,
    "innodb_flush_log_at_trx_commit": 2,  # survives a process kill, not an OS crash
    "max_connect_errors": 1_000_000,  # aborted handshakes must not block 127.0.0.1
    "character_set_server": "utf8mb4",  # as in Debian's packaged config
    "collation_server": "utf8mb4_general_ci",
}
# Options the manager sets itself; callers may not override them.
RESERVED_OPTIONS = frozenset(
    {"datadir", "port", "socket", "bind_address", "pid_file", "log_error", "user", "tmpdir", "basedir"}
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class MariaDBSupportError(RuntimeError):
    """Base class for errors of the test server manager."""


class MariaDBNotInstalled(MariaDBSupportError):
    """mariadbd or mariadb-install-db is missing."""


class MariaDBStartError(MariaDBSupportError):
    """A private server failed to start or to become ready."""


class NotSupportedWithExternalServer(MariaDBSupportError):
    """The operation needs a private mariadbd but MYSQL_TEST_URL is in use."""


# --------------------------------------------------------------------------
# Locating the binaries
# --------------------------------------------------------------------------


def find_program(name: str) -> str | None:
    """Path of `name` on PATH or in the usual sbin folders, else None."""
    found = shutil.which(name)
    if found:
        return found
    for folder in EXTRA_BIN_DIRS:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_binaries() -> tuple[str, str]:
    """(mariadbd, mariadb-install-db) paths, or MariaDBNotInstalled saying what is missing."""
    names = ("mariadbd", "mariadb-install-db")
    paths = {name: find_program(name) for name in names}
    missing = [name for name in names if paths[name] is None]
    if missing:
        raise MariaDBNotInstalled(
            f"cannot start a test MariaDB server: {' and '.join(missing)} not found "
            f"(looked on PATH and in {', '.join(EXTRA_BIN_DIRS)}). "
            f"Install it with: {INSTALL_COMMAND}  "
            f"(or set {EXTERNAL_URL_ENV}=mysql://user:password@host:port/ to use an existing test server)"
        )
    return paths["mariadbd"], paths["mariadb-install-db"]


# --------------------------------------------------------------------------
# Option handling
# --------------------------------------------------------------------------


def _option_key(name: str) -> str:
    return name.replace("-", "_").lower()


def merge_options(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_OPTIONS updated with `overrides` (None values delete)."""
    merged = dict(DEFAULT_OPTIONS)
    for name, value in (overrides or {}).items():
        key = _option_key(name)
        if key in RESERVED_OPTIONS:
            raise ValueError(f"server option {name!r} is managed by MariaDBServer and cannot be set")
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def option_args(options: Mapping[str, Any]) -> list[str]:
    """{"wait_timeout": 3, "log_bin": False} -> ["--wait-timeout=3", "--skip-log-bin"]."""
    args = []
    for key, value in options.items():
        flag = key.replace("_", "-")
        if value is True:
            args.append(f"--{flag}")
        elif value is False:
            args.append(f"--skip-{flag}")
        else:
            args.append(f"--{flag}={value}")
    return args


# --------------------------------------------------------------------------
# Session state: temp root, template datadir, live servers, cleanup
# --------------------------------------------------------------------------

_lock = threading.RLock()
_session_root: Path | None = None
_template: Path | None = None
_live_servers: set[MariaDBServer] = set()


def _temp_base() -> str:
    """A temp folder short enough for unix socket paths (max ~107 bytes)."""
    base = tempfile.gettempdir()
    return base if len(base) <= 40 else "/tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _kill_orphan_mariadbd(pid_file: Path, datadir: Path) -> None:
    """SIGKILL the mariadbd named in pid_file, but only if it serves `datadir`."""
    pid = _read_int(pid_file)
    if pid is None:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return
    if f"--datadir={datadir}" in cmdline.split("\0"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap_orphans(base: str | None = None) -> None:
    """Remove session folders (and their servers) whose owning process has died."""
    for folder in Path(base or _temp_base()).glob(SESSION_PREFIX + "*"):
        owner = _read_int(folder / "owner.pid")
        if owner is None or _pid_alive(owner):
            continue
        for pid_file in folder.glob("*/mariadbd.pid"):
            _kill_orphan_mariadbd(pid_file, pid_file.parent / "data")
        shutil.rmtree(folder, ignore_errors=True)


def session_root() -> Path:
    """This process's temp folder for templates and servers (created lazily)."""
    global _session_root
    with _lock:
        if _session_root is None or not _session_root.exists():
            reap_orphans()
            _session_root = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=_temp_base()))
            (_session_root / "owner.pid").write_text(str(os.getpid()))
            _install_sigterm_handler()
        return _session_root


def _run_as_root_args() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


def _child_env() -> dict[str, str]:
    """Environment without MYSQL_* variables that mariadbd/clients would honour."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "MARIADB_"))}


def template_datadir() -> Path:
    """A datadir initialised by mariadb-install-db, created once per process."""
    global _template
    with _lock:
        if _template is not None and _template.exists():
            return _template
        _, install_db = find_binaries()
        target = session_root() / "template"
        _run_install_db(install_db, target)
        _template = target
        return _template


def _run_install_db(install_db: str, datadir: Path) -> None:
    cmd = [
        install_db,
        "--no-defaults",
        f"--datadir={datadir}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
        "--force",  # skip its hostname lookup: fails where /etc/hosts lacks the hostname
        *_run_as_root_args(),
        f"--innodb-log-file-size={DEFAULT_OPTIONS['innodb_log_file_size']}",
        f"--innodb-buffer-pool-size={DEFAULT_OPTIONS['innodb_buffer_pool_size']}",
    ]
    try:
        done = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env(),
            timeout=INSTALL_DB_TIMEOUT, text=True, errors="replace",
        )
    except subprocess.TimeoutExpired as exc:
        raise MariaDBStartError(f"mariadb-install-db did not finish in {INSTALL_DB_TIMEOUT:.0f}s: {cmd}") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-30:])
        raise MariaDBStartError(f"mariadb-install-db failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")


def _cleanup_at_exit() -> None:
    """atexit: kill every server still alive, then delete the session folder."""
    for server in list(_live_servers):
        try:
            server.close(clean=False)
        except Exception:  # best effort at interpreter exit
            pass
    if _session_root is not None:
        shutil.rmtree(_session_root, ignore_errors=True)


atexit.register(_cleanup_at_exit)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received signal {signum}")


def _install_sigterm_handler() -> None:
    """Make SIGTERM unwind like Ctrl-C so fixtures and atexit clean up."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


# --------------------------------------------------------------------------
# SQL helpers shared by private and external servers
# --------------------------------------------------------------------------


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid {what}: {name!r}")
    return name


def _quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _SQLHelpers:
    """Root-level helpers; subclasses provide host, port, root_user, root_password."""

    host: str
    root_user: str
    root_password: str

    @property
    def port(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self.url_for(self.root_user, self.root_password)

    def url_for(self, user: str, password: str = "", database: str = "") -> str:
        """mysql://user:password@host:port/database for any account on this server."""
        quote = urllib.parse.quote
        return f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{database}"

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        """A PyMySQL connection (root over TCP, autocommit on); kwargs override."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.root_user,
            "password": self.root_password,
            "autocommit": True,
            "connect_timeout": 10,
        }
        params.update(kwargs)
        return pymysql.connect(**params)

    def execute(self, sql: str, args: Any = None) -> tuple:
        """Run one statement on a short-lived root connection; return its rows."""
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return tuple(cur.fetchall())

    def server_version(self) -> str:
        return self.execute("SELECT VERSION()")[0][0]

    def is_mariadb(self) -> bool:
        if getattr(self, "_is_mariadb", None) is None:
            self._is_mariadb = "mariadb" in self.server_version().lower()
        return self._is_mariadb

    def create_user(
        self,
        name: str,
        password: str,
        *,
        max_user_connections: int | None = None,
        grants: str | None = "ALL PRIVILEGES ON *.*",
        plugin: str | None = None,
    ) -> None:
        """(Re)create 'name'@'%' with `password`, optional limit, grants and auth plugin."""
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
            if plugin:
                self._ensure_auth_plugin(cur, _check_identifier(plugin, "auth plugin"))
            sql, args = self._create_user_sql(name, password, plugin, max_user_connections)
            cur.execute(sql, args)
            if grants:
                cur.execute(f"GRANT {grants.replace('%', '%%')} TO %s@'%%'", (name,))
        self._remember("user", name)

    def _create_user_sql(self, name, password, plugin, max_user_connections):
        if plugin and self.is_mariadb():
            auth = f"IDENTIFIED VIA {plugin} USING PASSWORD(%s)"
        elif plugin:
            auth = f"IDENTIFIED WITH {plugin} BY %s"
        else:
            auth = "IDENTIFIED BY %s"
        limit = f" WITH MAX_USER_CONNECTIONS {int(max_user_connections)}" if max_user_connections is not None else ""
        return f"CREATE USER %s@'%%' {auth}{limit}", (name, password)

    def _ensure_auth_plugin(self, cur, plugin: str) -> None:
        """Load a MariaDB auth plugin (e.g. ed25519) that is not active yet."""
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = %s AND PLUGIN_STATUS = 'ACTIVE'",
            (plugin,),
        )
        if cur.fetchone()[0] == 0 and self.is_mariadb():
            cur.execute(f"INSTALL SONAME 'auth_{plugin}'")

    def drop_user(self, name: str) -> None:
        self.execute("DROP USER IF EXISTS %s@'%%'", (name,))

    def create_database(self, name: str) -> None:
        """Drop (if present) and create database `name`."""
        quoted = _quote_ident(name)
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quoted}")
            cur.execute(f"CREATE DATABASE {quoted}")
        self._remember("database", name)

    def connection_ids(self, user: str) -> list[int]:
        """Ids of `user`'s connections in PROCESSLIST (not counting this query's own)."""
        rows = self.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID() ORDER BY ID",
            (user,),
        )
        return [int(row[0]) for row in rows]

    def connection_count(self, user: str) -> int:
        return len(self.connection_ids(user))

    def wait_for_connection_count(self, user: str, expected: int, timeout: float = 10.0) -> None:
        """Block until connection_count(user) == expected (disconnects are asynchronous)."""
        deadline = time.monotonic() + timeout
        while (count := self.connection_count(user)) != expected:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{user!r} has {count} connections, expected {expected} after {timeout:.1f}s")
            time.sleep(0.05)

    def kill_connections(self, user: str, *, timeout: float = 10.0) -> list[int]:
        """KILL every connection of `user` (as a DBA would); wait until they are gone."""
        ids = self.connection_ids(user)
        with closing(self.connect()) as conn, conn.cursor() as cur:
            for conn_id in ids:
                try:
                    cur.execute(f"KILL CONNECTION {conn_id}")
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != 1094:  # unknown thread id: already gone
                        raise
        self._wait_gone(set(ids), user, timeout)
        return ids

    def _wait_gone(self, ids: set[int], user: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while remaining := ids.intersection(self.connection_ids(user)):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"killed connections {sorted(remaining)} of {user!r} still listed after {timeout:.1f}s"
                )
            time.sleep(0.02)

    def get_global(self, name: str) -> Any:
        return self.execute(f"SELECT @@GLOBAL.{_check_identifier(name, 'variable name')}")[0][0]

    def set_global(self, name: str, value: Any) -> None:
        """SET GLOBAL name = value (value is passed as a parameter)."""
        self.execute(f"SET GLOBAL {_check_identifier(name, 'variable name')} = %s", (value,))

    def _remember(self, kind: str, name: str) -> None:
        """Hook for ExternalServer to undo what tests created."""


# --------------------------------------------------------------------------
# Private server
# --------------------------------------------------------------------------


class MariaDBServer(_SQLHelpers):
    """One private mariadbd on 127.0.0.1:<free port>; see module comment."""

    host = LOOPBACK
    root_user = "root"
    root_password = ""

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        startup_timeout: float = STARTUP_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
        launcher: Iterable[str] = (),
    ) -> None:
        self.options = merge_options(options)
        self.launcher = list(launcher)  # a command mariadbd runs under (e.g. valgrind and its options)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.mariadbd, _ = find_binaries()
        self.base_dir = Path(tempfile.mkdtemp(prefix="srv-", dir=session_root()))
        self.datadir = self.base_dir / "data"
        self.error_log = self.base_dir / "error.log"
        self.pid_file = self.base_dir / "mariadbd.pid"
        self._socket = self.base_dir / "mariadbd.sock"
        self._tmpdir = self.base_dir / "tmp"
        self._port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._closed = False
        self.startup_seconds: float | None = None  # duration of the last start()
        with _lock:
            _live_servers.add(self)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<MariaDBServer {self.host}:{self._port} {state} {self.base_dir}>"

    def __enter__(self) -> MariaDBServer:
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise MariaDBSupportError("server has not been started yet: no port assigned")
        return self._port

    @property
    def unix_socket(self) -> str:
        return str(self._socket)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle -----------------------------------------------------------

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @classmethod
    def started(cls, options: Mapping[str, Any] | None = None, **kwargs: Any) -> MariaDBServer:
        """A new private server, started; if starting fails, nothing is left behind."""
        server = cls(options, **kwargs)
        try:
            server.start()
        except BaseException:
            server.close(clean=False)
            raise
        return server

    def start(self) -> None:
        """Start mariadbd (first start: copy template, pick a port) and wait until ready."""
        if self._closed:
            raise MariaDBSupportError("server was closed; create a new MariaDBServer")
        if self.is_running():
            raise MariaDBSupportError(f"server already running on port {self._port}")
        began = time.monotonic()
        self._prepare_datadir()
        if self._port is None:
            self._start_on_fresh_port()
        else:
            self._start_on_same_port(self._port)
        self.startup_seconds = time.monotonic() - began

    def stop(self, timeout: float | None = None) -> None:
        """Clean shutdown (SIGTERM); SIGKILL if it takes longer than `timeout` s."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._sigkill(proc)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL mariadbd: simulates a crash (InnoDB recovers on next start())."""
        proc = self._proc
        if proc is None:
            return
        self._sigkill(proc)
        self._proc = None

    def restart(self) -> None:
        """stop() then start() on the same port and datadir."""
        self.stop()
        self.start()

    def close(self, clean: bool = True) -> None:
        """Stop (clean=True) or kill the server and delete all its files. Idempotent."""
        try:
            if clean:
                self.stop(timeout=min(self.stop_timeout, 10.0))
            else:
                self.kill()
        finally:
            self._closed = True
            shutil.rmtree(self.base_dir, ignore_errors=True)
            with _lock:
                _live_servers.discard(self)

    # -- diagnostics ---------------------------------------------------------

    def error_log_tail(self, n: int = 50) -> str:
        """Last `n` lines of this server's error log ('' if none yet)."""
        try:
            lines = self.error_log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    # -- internals -----------------------------------------------------------

    def _prepare_datadir(self) -> None:
        if not self.datadir.exists():
            shutil.copytree(template_datadir(), self.datadir, symlinks=True)
        self._tmpdir.mkdir(exist_ok=True)

    def _start_on_fresh_port(self) -> None:
        from .net import free_port

        for attempt in range(1, BIND_RETRIES + 1):
            port = free_port(self.host)
            try:
                self._launch_and_wait(port, port_open_timeout=0)
            except _PortTaken:
                if attempt == BIND_RETRIES:
                    raise MariaDBStartError(
                        f"mariadbd could not bind a free port in {BIND_RETRIES} attempts\n{self.error_log_tail()}"
                    ) from None
                continue
            self._port = port
            return

    def _start_on_same_port(self, port: int) -> None:
        try:
            self._launch_and_wait(port, port_open_timeout=RESTART_PORT_WAIT)
        except _PortTaken:
            raise MariaDBStartError(
                f"cannot restart on port {port}: still in use by another process after "
                f"{RESTART_PORT_WAIT}s\n{self.error_log_tail()}"
            ) from None

    def _command(self, port: int, port_open_timeout: int) -> list[str]:
        cmd = [
            *self.launcher,
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={port}",
            f"--bind-address={self.host}",
            f"--socket={self._socket}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--tmpdir={self._tmpdir}",
            *_run_as_root_args(),
            *option_args(self.options),
        ]
        if port_open_timeout:
            cmd.append(f"--port-open-timeout={port_open_timeout}")
        return cmd

    def _launch_and_wait(self, port: int, port_open_timeout: int) -> None:
        log_offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        with open(self.error_log, "ab") as early_output:  # errors before --log-error is opened
            self._proc = subprocess.Popen(
                self._command(port, port_open_timeout),
                stdin=subprocess.DEVNULL, stdout=early_output, stderr=early_output,
                env=_child_env(), start_new_session=True,
            )
        try:
            self._wait_ready(port, log_offset)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, port: int, log_offset: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while True:
            self._raise_if_exited(log_offset)
            try:
                self._check_identity(port)
                return
            except pymysql.err.OperationalError as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise MariaDBStartError(
                    f"mariadbd on port {port} not ready after {self.startup_timeout:.0f}s "
                    f"(last error: {last_error}); error log {self.error_log}:\n{self.error_log_tail()}"
                )
            time.sleep(0.05)

    def _raise_if_exited(self, log_offset: int) -> None:
        proc = self._proc
        assert proc is not None
        code = proc.poll()
        if code is None:
            return
        if "Address already in use" in self._log_since(log_offset):
            raise _PortTaken()
        raise MariaDBStartError(
            f"mariadbd exited with code {code} during startup; command: {' '.join(proc.args)}\n"
            f"error log {self.error_log}:\n{self.error_log_tail()}"
        )

    def _check_identity(self, port: int) -> None:
        """Connect over TCP and make sure the server on `port` is ours."""
        with closing(pymysql.connect(host=self.host, port=port, user=self.root_user,
                                     password=self.root_password, connect_timeout=1)) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@socket")
            served_socket = cur.fetchone()[0]
        if served_socket != str(self._socket):
            raise _PortTaken(f"port {port} is served by another server (socket {served_socket})")

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.error_log, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def _sigkill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=REAP_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise MariaDBSupportError(f"mariadbd pid {proc.pid} survived SIGKILL for {REAP_TIMEOUT:.0f}s") from exc


class _PortTaken(Exception):
    """mariadbd lost the race for the port chosen by free_port()."""


# --------------------------------------------------------------------------
# External server (MYSQL_TEST_URL)
# --------------------------------------------------------------------------


class ExternalServer(_SQLHelpers):
    """An existing server named by a URL: SQL helpers only, changes undone on close()."""

    unix_socket = None

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("mysql", "mariadb") or not parsed.hostname:
            raise ValueError(f"{EXTERNAL_URL_ENV} must look like mysql://user:password@host:port/, got {url!r}")
        self.host = parsed.hostname
        self._port = parsed.port or 3306
        self.root_user = urllib.parse.unquote(parsed.username or "root")
        self.root_password = urllib.parse.unquote(parsed.password or "")
        self._saved_globals: dict[str, Any] = {}
        self._created: list[tuple[str, str]] = []
        try:
            for name, value in (options or {}).items():
                self._apply_option(name, value)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<ExternalServer {self.host}:{self._port}>"

    def __enter__(self) -> ExternalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._port

    def is_running(self) -> bool:
        try:
            self.execute("SELECT 1")
        except pymysql.err.OperationalError:
            return False
        return True

    def _unsupported(self, operation: str):
        raise NotSupportedWithExternalServer(
            f"{operation}() needs a private mariadbd, but {EXTERNAL_URL_ENV} points at an external "
            f"server ({self.host}:{self._port}); call require_restartable(server) in this test"
        )

    def start(self) -> None:
        self._unsupported("start")

    def stop(self, timeout: float | None = None) -> None:
        self._unsupported("stop")

    def kill(self) -> None:
        self._unsupported("kill")

    def restart(self) -> None:
        self._unsupported("restart")

    def error_log_tail(self, n: int = 50) -> str:
        return f"(error log not available: external server {self.host}:{self._port})"

    def set_global(self, name: str, value: Any) -> None:
        """SET GLOBAL, remembering the original value so close() can restore it."""
        key = _check_identifier(name, "variable name").lower()
        original = self.get_global(key)
        super().set_global(key, value)
        self._saved_globals.setdefault(key, original)

    def _apply_option(self, name: str, value: Any) -> None:
        key = _option_key(name)
        try:
            self.set_global(key, value)
        except pymysql.err.MySQLError as exc:
            raise NotSupportedWithExternalServer(
                f"server option {name}={value!r} cannot be applied to external server "
                f"{self.host}:{self._port} with SET GLOBAL: {exc}"
            ) from exc

    def _remember(self, kind: str, name: str) -> None:
        if (kind, name) not in self._created:
            self._created.append((kind, name))

    def close(self, clean: bool = True) -> None:
        """Restore changed globals and drop the users/databases created through us."""
        for name, value in self._saved_globals.items():
            super().set_global(name, value)
        self._saved_globals.clear()
        for kind, name in reversed(self._created):
            if kind == "user":
                self.drop_user(name)
            else:
                self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)}")
        self._created.clear()


# --------------------------------------------------------------------------
# Entry points used by fixtures and tests
# --------------------------------------------------------------------------


def external_url() -> str | None:
    return os.environ.get(EXTERNAL_URL_ENV) or None


def start_server(**options: Any) -> MariaDBServer | ExternalServer:
    """A started private server with `options`, or the MYSQL_TEST_URL server."""
    url = external_url()
    if url:
        return ExternalServer(url, options)
    return MariaDBServer.started(options)


def require_restartable(server: _SQLHelpers) -> None:
    """Skip the calling test when `server` is external (MYSQL_TEST_URL mode)."""
    if isinstance(server, ExternalServer):
        import pytest

        pytest.skip("needs a private mariadbd; MYSQL_TEST_URL points at an external server")


def close_all(servers: Iterable[_SQLHelpers]) -> None:
    """Close every server, then re-raise the first error (so none is leaked)."""
    first_error: BaseException | None = None
    for server in servers:
        try:
            server.close()
        except BaseException as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
