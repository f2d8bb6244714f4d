"""Tests of mysqlpool_proxy.config: defaults, validation, secrets, env overrides, the example."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from mysqlpool_proxy.config import (
    SCHEMA,
    AdminConfig,
    BackendConfig,
    Config,
    ConfigError,
    ListenAddress,
    LogConfig,
    MetricsConfig,
    PoolConfig,
    ProxyConfig,
    UserConfig,
    env_var_name,
    load_config,
    parse_listen,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "mysqlpool_proxy" / "config.example.toml"  # package data; a link at the top
USER = '[[users]]\nname = "app"\npassword = "pw"\n'
HASH = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"  # mysql_native_password of "password"
ADMIN_OFF_WARNING = "the admin console is off"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ or {})


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    return str(info.value)


# -- defaults --------------------------------------------------------------

def test_defaults(tmp_path):
    path = write(tmp_path, USER)
    cfg = load_config(path, {})
    assert (cfg.proxy, cfg.backend, cfg.pool) == (ProxyConfig(), BackendConfig(), PoolConfig())
    assert (cfg.admin, cfg.metrics, cfg.log) == (AdminConfig(), MetricsConfig(), LogConfig())
    assert cfg.users == (UserConfig(name="app", password="pw"),)
    user = cfg.users[0]
    assert (user.backend_user, user.backend_password, user.max_size) == ("app", "pw", None)
    assert cfg.source == path
    assert cfg.warnings == ()  # the admin console left at its defaults is simply off
    assert not cfg.admin.enabled and cfg.metrics.enabled
    assert cfg.user("app") is user and cfg.user("nobody") is None
    assert cfg.pool_max_size(user) == 10


def test_defaults_are_the_documented_ones():
    assert dataclasses.asdict(ProxyConfig()) == {
        "listen": "127.0.0.1:6033", "max_client_connections": 10000, "client_idle_timeout": 0,
        "shutdown_timeout": 30, "workers": 1, "server_version": "", "max_packet_size": None,
        "tls_cert": "", "tls_key": "", "require_tls": False, "rsa_private_key": "", "rsa_public_key": ""}
    assert dataclasses.asdict(BackendConfig()) == {
        "host": "127.0.0.1", "port": 3306, "unix_socket": "", "connect_timeout": 5,
        "dead_connection_timeout": 30, "probe_interval": 5, "max_connections": 100, "charset": "utf8mb4",
        "ssl_mode": "disabled", "ssl_ca": "", "ssl_cert": "", "ssl_key": ""}
    assert dataclasses.asdict(PoolConfig()) == {
        "mode": "transaction", "max_size": 10, "min_idle": 0, "max_lifetime": 3600,
        "idle_timeout": None, "checkout_timeout": 10, "max_waiting_clients": 1000,
        "ping_after": 5, "max_connecting": 4, "query_timeout": 0, "idle_transaction_timeout": 0,
        "result_buffer_bytes": 4194304, "prepared_statement_cache_size": 256}
    assert dataclasses.asdict(AdminConfig()) == {
        "listen": "127.0.0.1:6034", "user": "admin", "password": None, "password_hash": None}
    assert dataclasses.asdict(MetricsConfig()) == {"listen": "127.0.0.1:9106", "path": "/metrics"}
    assert dataclasses.asdict(LogConfig()) == {"level": "info", "format": "text", "stats_period": 60}


def test_durations_are_floats_and_sizes_ints(tmp_path):
    cfg = load(tmp_path, "[pool]\nmax_lifetime = 60\nping_after = 0.25\n" + USER)
    assert cfg.pool.max_lifetime == 60.0 and isinstance(cfg.pool.max_lifetime, float)
    assert cfg.pool.ping_after == 0.25
    assert isinstance(cfg.pool.checkout_timeout, float)
    assert isinstance(cfg.pool.max_size, int)


@pytest.fixture
def pem_files(tmp_path, tls_files):
    """A real certificate and key as cert.pem and key.pem beside the config (they are loaded)."""
    shutil.copy(tls_files.cert, tmp_path / "cert.pem")
    shutil.copy(tls_files.key, tmp_path / "key.pem")


def test_values_are_accepted_and_normalised(tmp_path, pem_files):
    cfg = load(tmp_path, f"""
[proxy]
listen = "unix:/tmp/proxy.sock"
tls_cert = "cert.pem"
tls_key = "{tmp_path / 'key.pem'}"
[backend]
ssl_mode = "VERIFY_CA"
ssl_ca = "cert.pem"
[pool]
mode = "Session"
idle_timeout = 600
[admin]
listen = "[::1]:0"
password = "adm"
[metrics]
listen = ""
[log]
level = "DEBUG"
format = "json"
""" + USER)
    assert cfg.proxy.listen_address == ListenAddress(unix_path="/tmp/proxy.sock")
    assert cfg.proxy.tls_cert == str(tmp_path / "cert.pem")  # relative to the config file
    assert cfg.backend.ssl_mode == "verify_ca" and cfg.pool.mode == "session"
    assert cfg.pool.idle_timeout == 600.0
    assert cfg.admin.enabled and cfg.admin.listen_address == ListenAddress("::1", 0)
    assert not cfg.metrics.enabled and cfg.metrics.listen_address is None
    assert (cfg.log.level, cfg.log.format) == ("debug", "json")
    assert cfg.warnings == ()


# -- validation: every error names the key and the file --------------------

BAD_VALUES = [
    # [proxy]
    ('[proxy]\nlisten = "127.0.0.1"', "proxy.listen must be 'host:port', '[ipv6]:port', ':port' "
                                      "or 'unix:/path/to.sock', got '127.0.0.1' (missing ':port')"),
    ('[proxy]\nlisten = "::1:6033"', "proxy.listen must be"),
    ('[proxy]\nlisten = "[nope]:6033"', "proxy.listen must be"),
    ('[proxy]\nlisten = "db:99999"', "proxy.listen must be"),
    ('[proxy]\nlisten = ""', "proxy.listen must be"),
    ('[proxy]\nlisten = "unix:"', "proxy.listen must be"),
    ("[proxy]\nmax_client_connections = 0", "proxy.max_client_connections must be an integer >= 1, got 0"),
    ("[proxy]\nclient_idle_timeout = -1", "proxy.client_idle_timeout must be a number of seconds >= 0, got -1"),
    ("[proxy]\nshutdown_timeout = inf", "proxy.shutdown_timeout must be a number of seconds >= 0, got inf"),
    ("[proxy]\nworkers = 0", "proxy.workers must be an integer >= 1, got 0"),
    ('[proxy]\nserver_version = "8.0\\u0000"', "proxy.server_version must be a string without NUL"),
    ("[proxy]\nmax_packet_size = 1023", "proxy.max_packet_size must be an integer from 1024 to 1073741824, got 1023"),
    ("[proxy]\nmax_packet_size = 1073741825", "proxy.max_packet_size must be an integer from 1024 to 1073741824"),
    ('[proxy]\ntls_cert = "missing.pem"\ntls_key = "cert.pem"', "proxy.tls_cert must be the path of an existing file"),
    ('[proxy]\ntls_cert = "cert.pem"', "proxy.tls_key is required because proxy.tls_cert is set"),
    # [backend]
    ('[backend]\nhost = ""', "backend.host must be a non-empty string, got ''"),
    ("[backend]\nport = 0", "backend.port must be an integer from 1 to 65535, got 0"),
    ("[backend]\nport = 65536", "backend.port must be an integer from 1 to 65535, got 65536"),
    ('[backend]\nport = "3306"', "backend.port must be an integer from 1 to 65535, got '3306'"),
    ("[backend]\nconnect_timeout = 0", "backend.connect_timeout must be a number of seconds > 0, got 0"),
    ("[backend]\ndead_connection_timeout = 0.5",
     "backend.dead_connection_timeout must be 0 or a number of seconds >= 1, got 0.5"),
    ("[backend]\nmax_connections = 0", "backend.max_connections must be an integer >= 1, got 0"),
    ('[backend]\ncharset = "utf-8"', "backend.charset must be a character set name"),
    ('[backend]\nssl_mode = "on"', "backend.ssl_mode must be one of 'disabled', 'preferred', 'required', "
                                   "'verify_ca', 'verify_identity', got 'on'"),
    ('[backend]\nssl_mode = "required"\nssl_ca = "nope.pem"', "backend.ssl_ca must be the path of an existing file"),
    ('[backend]\nssl_mode = "verify_identity"',
     "backend.ssl_ca is required when backend.ssl_mode is 'verify_identity'"),
    ('[backend]\nssl_mode = "required"\nssl_key = "cert.pem"',
     "backend.ssl_cert is required because backend.ssl_key is set"),
    # [pool]
    ('[pool]\nmode = "statement"', "pool.mode must be one of 'transaction', 'session', got 'statement'"),
    ("[pool]\nmax_size = 0", "pool.max_size must be an integer >= 1, got 0"),
    ("[pool]\nmax_size = 2.5", "pool.max_size must be an integer >= 1, got 2.5"),
    ("[pool]\nmax_size = true", "pool.max_size must be an integer >= 1, got True"),
    ("[pool]\nmin_idle = -1", "pool.min_idle must be an integer >= 0, got -1"),
    ("[pool]\nmin_idle = 11", "pool.min_idle must be <= pool.max_size (10), got 11"),
    ("[pool]\nmax_lifetime = 0", "pool.max_lifetime must be a number of seconds > 0, got 0"),
    ("[pool]\nidle_timeout = 0", "pool.idle_timeout must be a number of seconds > 0, got 0"),
    ("[pool]\ncheckout_timeout = -1", "pool.checkout_timeout must be a number of seconds > 0, got -1"),
    ("[pool]\nmax_waiting_clients = -1", "pool.max_waiting_clients must be an integer >= 0, got -1"),
    ("[pool]\nping_after = -0.5", "pool.ping_after must be a number of seconds >= 0, got -0.5"),
    ("[pool]\nmax_connecting = 0", "pool.max_connecting must be an integer >= 1, got 0"),
    ('[pool]\nquery_timeout = "10"', "pool.query_timeout must be a number of seconds >= 0, got '10'"),
    ("[pool]\nidle_transaction_timeout = nan",
     "pool.idle_transaction_timeout must be a number of seconds >= 0, got nan"),
    ("[pool]\nresult_buffer_bytes = 65535", "pool.result_buffer_bytes must be an integer >= 65536, got 65535"),
    ("[pool]\nprepared_statement_cache_size = 0", "pool.prepared_statement_cache_size must be an integer >= 1, got 0"),
    ("[proxy]\nrequire_tls = true", "proxy.require_tls = true needs proxy.tls_cert and proxy.tls_key"),
    ('[proxy]\nrequire_tls = true\ntls_cert = "cert.pem"', "proxy.require_tls = true needs proxy.tls_cert and "
                                                        "proxy.tls_key"),
    ('[proxy]\nrequire_tls = "yes"', "proxy.require_tls must be true or false, got 'yes'"),
    ("[proxy]\nrequire_tls = 1", "proxy.require_tls must be true or false, got 1"),
    # [[users]]
    ('[[users]]\npassword = "pw"', "users[0].name is required"),
    ('[[users]]\nname = ""\npassword = "pw"', "users[0].name must be a non-empty string, got ''"),
    (USER + USER, "users[1].name 'app' is already used by users[0]"),
    ('[[users]]\nname = "app"', "users[0].password (or password_env / password_file) or "
                                "users[0].password_hash is required"),
    (USER + f'password_hash = "{HASH}"', "users[0].password and users[0].password_hash are both set"),
    ('[[users]]\nname = "app"\npassword_hash = "*abc"\nbackend_password = "x"',
     "users[0].password_hash must be '*' followed by 40 hex digits"),
    ('[[users]]\nname = "app"\npassword_hash = "2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"\nbackend_password = "x"',
     "users[0].password_hash must be '*' followed by 40 hex digits"),
    (USER + "max_size = 0", "users[0].max_size must be an integer >= 1, got 0"),
    ("[pool]\nmin_idle = 3\n" + USER + "max_size = 2", "users[0].max_size (2) must be >= pool.min_idle (3)"),
    (USER + "backend_user = 5", "users[0].backend_user must be a string"),
    ("users = 1", "users must be an array of tables"),
    ('[users]\nname = "app"', "users must be an array of tables"),
    ("# no users at all", "users: at least one [[users]] entry is required"),
    # [admin], [metrics], [log]
    ('[admin]\nlisten = "nope"', "admin.listen must be 'host:port', '[ipv6]:port', ':port' or "
                                 "'unix:/path/to.sock' (or \"\" to turn it off), got 'nope'"),
    ('[admin]\nuser = ""', "admin.user must be a non-empty string"),
    ('[admin]\npassword = ""', "admin.password must not be empty"),
    (f'[admin]\npassword = "x"\npassword_hash = "{HASH}"', "admin.password and admin.password_hash are both set"),
    ('[admin]\nlisten = "127.0.0.1:6033"\npassword = "x"', "admin.listen must differ from proxy.listen"),
    ('[metrics]\nlisten = ":99999"', "metrics.listen must be"),
    ('[metrics]\nlisten = "127.0.0.1:6033"', "metrics.listen must differ from proxy.listen"),
    ('[metrics]\npath = "metrics"', "metrics.path must be a URL path starting with '/', got 'metrics'"),
    ('[log]\nlevel = "verbose"', "log.level must be one of 'debug', 'info', 'warning', 'error', got 'verbose'"),
    ('[log]\nformat = "xml"', "log.format must be one of 'text', 'json', got 'xml'"),
    ("pool = 5", "pool must be a table ([pool]), got a value of type int"),
]


@pytest.mark.parametrize("text, message", BAD_VALUES, ids=[m[:50] for _, m in BAD_VALUES])
def test_bad_value_error_names_key_and_file(tmp_path, text, message):
    (tmp_path / "cert.pem").write_text("x")
    if "users" not in text:
        text += "\n" + USER
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert f"config error in {path}: {message}" in str(info.value)


def test_all_problems_are_reported_at_once(tmp_path):
    path = write(tmp_path, "[pool]\nmax_size = 0\nmode = 'x'\n[backend]\nport = 0\n" + USER)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert len(info.value.problems) == 3
    assert all(line.startswith(f"config error in {path}: ") for line in str(info.value).splitlines())


def test_secret_values_are_never_shown_in_errors(tmp_path):
    message = error_of(tmp_path, '[[users]]\nname = "app"\npassword_hash = "*hunter2"\nbackend_password = "x"')
    assert "hunter2" not in message and "8-character string (not shown)" in message
    message = error_of(tmp_path, '[[users]]\nname = "app"\npassword = 123456789')
    assert "users[0].password must be a string" in message and "123456789" not in message


def test_missing_file_is_named(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=re.escape(f"config error in {path}: cannot read")):
        load_config(path, {})


def test_invalid_toml_is_named(tmp_path):
    path = write(tmp_path, "[pool\nmax_size = 1")
    with pytest.raises(ConfigError, match=re.escape(f"config error in {path}: not valid TOML")):
        load_config(path, {})


# -- unknown keys ------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("[pool]\nmax_szie = 5", "unknown key 'pool.max_szie' (did you mean 'max_size'?)"),
    ("[pol]\nmax_size = 5", "unknown key 'pol' (did you mean 'pool'?)"),
    ('listen = ":6033"', "unknown key 'listen' (did you mean 'proxy.listen'?)"),
    ("[backend]\nzzz = 1", "unknown key 'backend.zzz'"),
    (USER + 'pasword = "x"', "unknown key 'users[0].pasword' (did you mean 'password'?)"),
    (USER + 'password_evn = "X"', "unknown key 'users[0].password_evn' (did you mean 'password_env'?)"),
])
def test_unknown_key_with_suggestion(tmp_path, text, message):
    if "users" not in text:
        text += "\n" + USER
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert f"config error in {path}: {message}" in str(info.value)


# -- secrets from the environment and from files -----------------------------

def test_secret_from_env_var(tmp_path):
    cfg = load(tmp_path, '[admin]\npassword_env = "ADM"\n[[users]]\nname = "app"\n'
                         'password_env = "APP_PW"\nbackend_password_env = "BACK_PW"\n',
               {"APP_PW": "front", "BACK_PW": "back", "ADM": "adm"})
    assert (cfg.users[0].password, cfg.users[0].backend_password) == ("front", "back")
    assert cfg.admin.password == "adm" and cfg.admin.enabled


def test_secret_env_var_unset_names_key(tmp_path):
    message = error_of(tmp_path, '[[users]]\nname = "app"\npassword_env = "APP_PW"\n')
    assert "users[0].password_env: environment variable APP_PW is not set" in message


def test_secret_from_file_strips_one_newline(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "adm").write_bytes(b"adm\r\n")
    cfg = load(tmp_path, f'[admin]\npassword_file = "{secrets / "adm"}"\n'
                         '[[users]]\nname = "app"\npassword_file = "pw"\n')
    assert cfg.users[0].password == "s3cret\n"  # relative to the config file's directory
    assert cfg.admin.password == "adm"


def test_secret_file_unreadable_names_key(tmp_path):
    message = error_of(tmp_path, '[[users]]\nname = "app"\npassword = "x"\nbackend_password_file = "nope"\n')
    assert f"users[0].backend_password_file: cannot read {tmp_path / 'nope'}" in message


@pytest.mark.parametrize("keys", [("password", "password_env"), ("password_env", "password_file")])
def test_only_one_form_of_a_secret(tmp_path, keys):
    text = '[[users]]\nname = "app"\n' + "".join(f'{k} = "X"\n' for k in keys)
    message = error_of(tmp_path, text, {"X": "x"})
    assert "set only one of " + ", ".join(f"users[0].{k}" for k in keys) in message


def test_empty_password_is_allowed(tmp_path):
    cfg = load(tmp_path, '[[users]]\nname = "app"\npassword = ""\n')
    assert cfg.users[0].password == "" and cfg.users[0].backend_password == ""


# -- password_hash -------------------------------------------------------------

def test_password_hash_is_upper_cased(tmp_path):
    cfg = load(tmp_path, f'[[users]]\nname = "app"\npassword_hash = "{HASH.lower()}"\n'
                         'backend_password = "password"\n')
    assert cfg.users[0].password_hash == HASH
    assert cfg.users[0].password is None and cfg.users[0].backend_password == "password"


def test_backend_password_required_with_hash_only(tmp_path):
    message = error_of(tmp_path, f'[[users]]\nname = "app"\npassword_hash = "{HASH}"\n')
    assert "users[0].backend_password (or backend_password_env / backend_password_file) is required" in message
    assert "cannot log in to the server with a hash" in message


# -- environment overrides -------------------------------------------------------

def test_env_overrides_file_with_type_conversion(tmp_path):
    cfg = load(tmp_path, "[pool]\nmax_size = 20\nidle_timeout = 60\n[admin]\npassword = 'x'\n" + USER, {
        "MYSQLPOOL_POOL_MAX_SIZE": "5",
        "MYSQLPOOL_POOL_MAX_LIFETIME": " 1.5 ",
        "MYSQLPOOL_POOL_IDLE_TIMEOUT": "none",
        "MYSQLPOOL_BACKEND_HOST": "db",
        "MYSQLPOOL_PROXY_LISTEN": "0.0.0.0:6033",
        "MYSQLPOOL_ADMIN_LISTEN": "",
        "MYSQLPOOL_LOG_LEVEL": "DEBUG",
        "MYSQLPOOL_CONFIG": "/ignored/by/load_config.toml",
    })
    assert cfg.pool.max_size == 5 and cfg.pool.max_lifetime == 1.5
    assert cfg.pool.idle_timeout is None
    assert cfg.backend.host == "db"
    assert cfg.proxy.listen_address == ListenAddress("0.0.0.0", 6033)
    assert cfg.admin.listen == "" and not cfg.admin.enabled
    assert cfg.log.level == "debug"


def test_environment_only(monkeypatch):
    cfg = load_config(None, {"MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD": "pw",
                             "MYSQLPOOL_USERS_0_MAX_SIZE": "3", "MYSQLPOOL_USERS_0_PASSWORD_HASH": ""})
    assert cfg.source == "<environment>"
    assert cfg.users == (UserConfig(name="app", password="pw", max_size=3),)
    assert cfg.pool_max_size(cfg.users[0]) == 3


def test_environment_only_needs_a_user():
    with pytest.raises(ConfigError, match=r"config error in <environment>: users: at least one"):
        load_config(None, {})


@pytest.mark.parametrize("var, value, message", [
    ("MYSQLPOOL_POOL_MAX_SIZE", "abc", "pool.max_size must be an integer >= 1, got 'abc' "
                                       "(from MYSQLPOOL_POOL_MAX_SIZE)"),
    ("MYSQLPOOL_POOL_MAX_SIZE", "0", "pool.max_size must be an integer >= 1, got '0' (from MYSQLPOOL_POOL_MAX_SIZE)"),
    ("MYSQLPOOL_POOL_MAX_SIZE", "5.0", "pool.max_size must be an integer >= 1, got '5.0' "
                                       "(from MYSQLPOOL_POOL_MAX_SIZE)"),
    ("MYSQLPOOL_PROXY_SHUTDOWN_TIMEOUT", "soon", "proxy.shutdown_timeout must be a number of seconds >= 0, "
                                                 "got 'soon' (from MYSQLPOOL_PROXY_SHUTDOWN_TIMEOUT)"),
    ("MYSQLPOOL_BACKEND_PORT", "", "backend.port must be an integer from 1 to 65535, got '' "
                                   "(from MYSQLPOOL_BACKEND_PORT)"),
    ("MYSQLPOOL_USERS_0_MAX_SIZE", "x", "users[0].max_size must be an integer >= 1, got 'x' "
                                        "(from MYSQLPOOL_USERS_0_MAX_SIZE)"),
    ("MYSQLPOOL_PROXY_REQUIRE_TLS", "maybe", "proxy.require_tls must be true or false, got 'maybe' "
                                             "(from MYSQLPOOL_PROXY_REQUIRE_TLS)"),
    ("MYSQLPOOL_POOL_MAX_SIZ", "5", "unknown environment variable MYSQLPOOL_POOL_MAX_SIZ "
                                    "(did you mean MYSQLPOOL_POOL_MAX_SIZE?)"),
    ("MYSQLPOOL_USERS_0_PASWORD", "x", "unknown environment variable MYSQLPOOL_USERS_0_PASWORD "
                                       "(did you mean MYSQLPOOL_USERS_0_PASSWORD?)"),
    ("MYSQLPOOL_USERS_X_NAME", "x", "unknown environment variable MYSQLPOOL_USERS_X_NAME"),
    ("MYSQLPOOL_VERBOSE", "1", "unknown environment variable MYSQLPOOL_VERBOSE"),
    ("MYSQLPOOL_USERS_2_NAME", "b", "MYSQLPOOL_USERS_2_NAME: there is no users[1]"),
])
def test_bad_env_value_names_variable_and_file(tmp_path, var, value, message):
    path = write(tmp_path, USER)
    with pytest.raises(ConfigError) as info:
        load_config(path, {var: value})
    assert f"config error in {path}: {message}" in str(info.value)


def test_the_build_switch_in_the_environment_is_not_a_setting(tmp_path):
    # MYSQLPOOL_PROXY_COMPILE=0 asks the package build for pure Python (README "Installing"); left exported
    # (a Dockerfile's ENV, a CI job's), it must not stop the proxy from starting.
    path = write(tmp_path, USER)
    cfg = load_config(path, {"MYSQLPOOL_PROXY_COMPILE": "0"})
    assert cfg.users[0].name == "app"


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("1", True), ("on", True), ("Yes", True), ("false", False), (" 0 ", False), ("off", False),
])
def test_require_tls_from_env(tmp_path, pem_files, text, expected):
    cfg = load(tmp_path, '[proxy]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n' + USER,
               {"MYSQLPOOL_PROXY_REQUIRE_TLS": text})
    assert cfg.proxy.require_tls is expected


def test_require_tls_with_a_certificate_and_key(tmp_path, pem_files):
    cfg = load(tmp_path, '[proxy]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\nrequire_tls = true\n' + USER)
    assert cfg.proxy.require_tls is True


def test_env_users_by_index(tmp_path):
    cfg = load(tmp_path, USER + "max_size = 4\n", {
        "MYSQLPOOL_USERS_0_PASSWORD": "new",
        "MYSQLPOOL_USERS_1_NAME": "reports",
        "MYSQLPOOL_USERS_1_PASSWORD_HASH": HASH.lower(),
        "MYSQLPOOL_USERS_1_BACKEND_PASSWORD_FILE": write(tmp_path, "password\n", "pw"),
    })
    app, reports = cfg.users
    assert (app.name, app.password, app.max_size) == ("app", "new", 4)
    assert (reports.name, reports.password_hash, reports.backend_password) == ("reports", HASH, "password")


def test_env_secret_replaces_the_files_form_of_it(tmp_path):
    text = '[[users]]\nname = "app"\npassword_env = "NOT_SET"\n'
    cfg = load(tmp_path, text, {"MYSQLPOOL_USERS_0_PASSWORD": "pw"})
    assert cfg.users[0].password == "pw"


def test_two_env_forms_of_one_secret_conflict(tmp_path):
    message = error_of(tmp_path, USER, {"MYSQLPOOL_USERS_0_PASSWORD": "a", "MYSQLPOOL_USERS_0_PASSWORD_ENV": "B"})
    assert "MYSQLPOOL_USERS_0_PASSWORD and MYSQLPOOL_USERS_0_PASSWORD_ENV both set users[0].password" in message


def test_every_setting_has_an_env_var():
    assert env_var_name("pool", "max_size") == "MYSQLPOOL_POOL_MAX_SIZE"
    assert env_var_name("users", "password_file", 2) == "MYSQLPOOL_USERS_2_PASSWORD_FILE"
    environ = {"MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD": "pw"}
    for section, rules in SCHEMA.items():
        if section != "users":
            for key in rules:  # each is recognised: no "unknown environment variable"
                name = env_var_name(section, key)
                value = getattr(load_config(None, environ), section)
                load_config(None, {**environ, name: _env_text(getattr(value, key))})


def _env_text(value) -> str:
    return "none" if value is None else str(value)


# -- warnings --------------------------------------------------------------------

def test_warnings(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    cfg = load(tmp_path, '[backend]\nssl_ca = "ca.pem"\nmax_connections = 5\n[pool]\nmin_idle = 3\n'
               + USER + USER.replace("app", "b"))
    text = "\n".join(cfg.warnings)
    assert "ssl_mode is 'disabled'" in text
    assert "the pool of users[0] ('app') may grow to 10 connections but backend.max_connections is 5" in text
    assert "pool.min_idle (3) x 2 users = 6 idle connections" in text
    assert ADMIN_OFF_WARNING not in text  # not asked for


@pytest.mark.parametrize("admin", ['listen = "127.0.0.1:7034"', 'user = "ops"'])
def test_an_admin_console_asked_for_without_a_password_is_a_warning(tmp_path, admin):
    cfg = load(tmp_path, f"[admin]\n{admin}\n" + USER)
    assert len(cfg.warnings) == 1 and ADMIN_OFF_WARNING in cfg.warnings[0]


def test_listeners_on_port_zero_may_repeat(tmp_path):
    cfg = load(tmp_path, '[proxy]\nlisten = "127.0.0.1:0"\n[admin]\nlisten = "127.0.0.1:0"\n'
                         'password = "x"\n[metrics]\nlisten = "127.0.0.1:0"\n' + USER)
    assert cfg.admin.enabled


# -- redacted() --------------------------------------------------------------------

def test_redacted_masks_every_secret(tmp_path):
    cfg = load(tmp_path, f"""
[admin]
password_hash = "{HASH}"
[[users]]
name = "app"
password = "front-secret"
backend_password = "back-secret"
[[users]]
name = "hashed"
password_hash = "{HASH}"
backend_password_env = "PW"
""", {"PW": "env-secret", "MYSQLPOOL_ADMIN_LISTEN": ":0"})
    red = cfg.redacted()
    dumped = json.dumps(red)
    for secret in ("front-secret", "back-secret", "env-secret", HASH):
        assert secret not in dumped
    assert red["users"][0] == {"name": "app", "password": "***", "password_hash": None,
                               "backend_user": "app", "backend_password": "***", "max_size": None,
                               "auth_plugins": ("mysql_native_password", "caching_sha2_password",
                                                "sha256_password", "client_ed25519")}
    assert red["users"][1]["password_hash"] == "***" and red["users"][1]["backend_password"] == "***"
    assert red["admin"] == {"listen": ":0", "user": "admin", "password": None, "password_hash": "***"}
    assert red["pool"]["max_size"] == 10 and list(red) == list(SCHEMA)
    secret_keys = {(s, k) for s, rules in SCHEMA.items() for k, r in rules.items() if r.secret}
    assert secret_keys == {("users", "password"), ("users", "password_hash"), ("users", "backend_password"),
                           ("admin", "password"), ("admin", "password_hash")}


# -- parse_listen --------------------------------------------------------------------

@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:6033", ListenAddress("127.0.0.1", 6033)),
    ("db.example.com:1", ListenAddress("db.example.com", 1)),
    ("[::1]:6033", ListenAddress("::1", 6033)),
    (":6033", ListenAddress("", 6033)),
    ("localhost:0", ListenAddress("localhost", 0)),
    ("unix:/run/mysqlpool/proxy.sock", ListenAddress(unix_path="/run/mysqlpool/proxy.sock")),
])
def test_parse_listen(text, address):
    assert parse_listen(text) == address
    assert str(address) == text


@pytest.mark.parametrize("text", ["", "6033", "host", "host:", "host:x", "host:65536", "::1:6033",
                                  "[::1]6033", "[1.2.3.4]:1", "bad host:1", "unix:", "unix:/" + "x" * 107])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError):
        parse_listen(text)


# -- config.example.toml ---------------------------------------------------------------

def test_example_loads_cleanly():
    cfg = load_config(str(EXAMPLE), {"APP_DB_PASSWORD": "s3cret"})
    assert (cfg.proxy, cfg.backend, cfg.pool) == (ProxyConfig(), BackendConfig(), PoolConfig())
    assert (cfg.admin, cfg.metrics, cfg.log) == (AdminConfig(), MetricsConfig(), LogConfig())
    assert cfg.users == (UserConfig(name="app", password="s3cret"),)
    assert cfg.warnings == ()  # it starts without a warning


def documented_keys(text: str) -> dict[str, set[str]]:
    """section -> keys set or shown commented out ("# key = value") in the example."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?([a-z]+)\]\]?", line.strip())
        commented = re.fullmatch(r"# ([a-z_]+ = .*)", line.strip())
        if header:
            section = header[1]
        elif commented and _is_toml(commented[1]):
            keys.setdefault(section, set()).update(tomllib.loads(commented[1]))
        elif line.strip() and not line.startswith("#"):
            keys.setdefault(section, set()).update(tomllib.loads(line))
    return keys


def _is_toml(line: str) -> bool:
    try:
        tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return False
    return True


def test_example_documents_exactly_the_schema_keys():
    keys = documented_keys(EXAMPLE.read_text())
    indirect = {(s, f"{k}{suffix}"): k for s, rules in SCHEMA.items() for k, r in rules.items()
                if r.indirect for suffix in ("_env", "_file")}
    base = {s: {indirect.get((s, k), k) for k in ks} for s, ks in keys.items()}
    assert base == {s: set(rules) for s, rules in SCHEMA.items()}


# -- login plugins and the RSA key pair ----------------------------------------------------------


def test_auth_plugins_default_and_order(tmp_path):
    from mysqlpool_proxy.protocol import auth

    assert load(tmp_path, USER).users[0].auth_plugins == tuple(p.decode() for p in auth.DEFAULT_PLUGINS)
    cfg = load(tmp_path, USER + 'auth_plugins = ["Caching_SHA2_Password", "mysql_native_password", '
                                '"caching_sha2_password"]\n')
    assert cfg.users[0].auth_plugins == ("caching_sha2_password", "mysql_native_password")


def test_auth_plugins_names_match_the_protocol():
    from mysqlpool_proxy.config import AUTH_PLUGINS, DEFAULT_AUTH_PLUGINS
    from mysqlpool_proxy.protocol import auth

    assert tuple(p.decode() for p in auth.PLUGINS) == AUTH_PLUGINS
    assert tuple(p.decode() for p in auth.DEFAULT_PLUGINS) == DEFAULT_AUTH_PLUGINS


@pytest.mark.parametrize("value, message", [
    ('["mysql_native_pasword"]', "users[0].auth_plugins must be a non-empty list of login plugins, from "
                                 "'mysql_native_password', 'caching_sha2_password', 'sha256_password', "
                                 "'client_ed25519', 'mysql_clear_password', got ['mysql_native_pasword'] "
                                 "(unknown plugin 'mysql_native_pasword' (did you mean 'mysql_native_password'?))"),
    ('["dialog", "mysql_native_password"]', "(unknown plugin 'dialog')"),
    ("[]", "users[0].auth_plugins must be a non-empty list"),
    ('"mysql_native_password"', "users[0].auth_plugins must be a non-empty list"),
    ("[1]", "(each plugin is a string)"),
])
def test_unknown_auth_plugin_is_an_error_naming_key_and_file(tmp_path, value, message):
    path = write(tmp_path, USER + f"auth_plugins = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert f"config error in {path}: " in str(info.value) and message in str(info.value)


def test_auth_plugins_from_env(tmp_path):
    cfg = load(tmp_path, USER, {"MYSQLPOOL_USERS_0_AUTH_PLUGINS": "client_ed25519, mysql_native_password"})
    assert cfg.users[0].auth_plugins == ("client_ed25519", "mysql_native_password")


def test_ed25519_only_needs_the_password(tmp_path):
    text = (f'[[users]]\nname = "app"\npassword_hash = "{HASH}"\nbackend_password = "x"\n'
            'auth_plugins = ["client_ed25519"]\n')
    assert "users[0].auth_plugins allows only client_ed25519, which needs the password" in error_of(tmp_path, text)


def _rsa_pem(tmp_path: Path, bits: int = 2048) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = tmp_path / f"private_{bits}.pem"
    public = tmp_path / f"public_{bits}.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


def test_rsa_key_files(tmp_path):
    private, public = _rsa_pem(tmp_path)
    cfg = load(tmp_path, f'[proxy]\nrsa_private_key = "{private}"\nrsa_public_key = "{public}"\n' + USER)
    assert (cfg.proxy.rsa_private_key, cfg.proxy.rsa_public_key) == (private, public)
    assert load(tmp_path, f'[proxy]\nrsa_private_key = "{private}"\n' + USER).proxy.rsa_public_key == ""


def test_rsa_key_file_errors(tmp_path):
    private, public = _rsa_pem(tmp_path)
    _, other_public = _rsa_pem(tmp_path / "other" if (tmp_path / "other").mkdir() is None else tmp_path)
    small, _ = _rsa_pem(tmp_path, 1024)
    assert "proxy.rsa_public_key is set without proxy.rsa_private_key" in error_of(
        tmp_path, f'[proxy]\nrsa_public_key = "{public}"\n' + USER)
    message = error_of(tmp_path, f'[proxy]\nrsa_private_key = "{private}"\nrsa_public_key = "{other_public}"\n' + USER)
    assert f"proxy.rsa_public_key = '{other_public}'" in message and "not the PEM public key of" in message
    message = error_of(tmp_path, f'[proxy]\nrsa_private_key = "{small}"\n' + USER)
    assert "not an unencrypted PEM RSA private key of at least 2048 bits" in message
    message = error_of(tmp_path, f'[proxy]\nrsa_private_key = "{public}"\n' + USER)
    assert f"proxy.rsa_private_key = '{public}'" in message and "BEGIN" not in message
