# Configuration of the proxy: the only place that knows what settings exist.
#
# What this module owns: every setting's name, type, default and rule; reading
# them from a TOML file and MYSQLPOOL_* environment variables; and every check
# of their values, with errors that name the key and the file. Other modules get
# a frozen, already-valid Config and never re-check it.
#
# How it works:
#   * The schema is the section dataclasses below. Each field is declared with a
#     helper (integer(), seconds(), choice(), ...) that stores a Rule in the
#     field's metadata: the TOML/env type, the rule in words ("an integer >= 1")
#     and a check. SCHEMA maps section -> key -> Rule for anyone who needs it.
#   * load_config() runs a short pipeline over plain dicts:
#       read TOML -> split into sections and [[users]], rejecting unknown keys
#       -> overlay MYSQLPOOL_* variables (env wins), then the command line's
#       settings (Override: they win over both) -> resolve X_env / X_file
#       secrets -> check each key against its Rule -> build the dataclasses
#       -> cross-key checks (CHECKS), which may also add warnings; they also
#       load the TLS files, so a certificate that cannot be used is a config error.
#   * Provenance: Config.origins says, for every setting that is not at its
#     default, where it came from (Origin: the file, an environment variable or a
#     command-line option) and whether it replaced a value the file sets.
#     A console SET changes one setting with set_setting(): the same rule and
#     cross-key checks, its Origin ADMIN.
#     Problems are collected rather than raised one at a time, so a single run
#     of --check-config reports everything that is wrong; ConfigError carries
#     one line per problem, each starting "config error in <file>: ".
#   * Durations are float seconds, sizes are int bytes/connections. Relative
#     file paths given in the TOML file are relative to that file's directory.
"""Configuration: load_config(), parse_listen() and the Config dataclasses."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from mysqlpool_proxy.logs import FORMATS as LOG_FORMATS, LEVELS as LOG_LEVELS, REDACTED, redact

__all__ = [
    "ConfigError", "Config", "ProxyConfig", "BackendConfig", "PoolConfig", "UserConfig",
    "AdminConfig", "MetricsConfig", "LogConfig", "ListenAddress", "Rule", "SCHEMA", "SECTIONS",
    "Origin", "Override", "load_config", "set_setting", "setting_default", "peek_log_format", "parse_listen",
    "env_var_name",
    "ENV_PREFIX", "ENV_CONFIG_PATH", "ENV_SOURCE", "DEFAULT_CONFIG_PATH", "SSL_MODES", "POOL_MODES",
]

ENV_PREFIX = "MYSQLPOOL_"
ENV_CONFIG_PATH = "MYSQLPOOL_CONFIG"  # read by the CLI, not an override
ENV_BUILD_SWITCH = "MYSQLPOOL_PROXY_COMPILE"  # read by the package build (setup.py), not a setting
ENV_SOURCE = "<environment>"
DEFAULT_CONFIG_PATH = "/etc/mysqlpool/config.toml"
SSL_MODES = ("disabled", "preferred", "required", "verify_ca", "verify_identity")
POOL_MODES = ("transaction", "session")
UNIX_PATH_MAX = 107  # bytes in sockaddr_un.sun_path on Linux, minus the NUL


class ConfigError(Exception):
    """Invalid configuration. str() is one line per problem, each naming the file and key."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


# --------------------------------------------------------------------------
# Listen addresses
# --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A parsed listen address: TCP (host, port) or a Unix socket (unix_path).

    host "" means all interfaces; port 0 means any free port (useful in tests).
    """

    host: str = ""
    port: int = 0
    unix_path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.unix_path is not None

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")


def parse_listen(s: str) -> ListenAddress:
    """Parse "host:port", "[ipv6]:port", ":port" or "unix:/path/to.sock".

    Raises ValueError saying what is wrong.
    """
    if not isinstance(s, str):
        raise ValueError(f"expected a string, got {type(s).__name__}")
    if s.startswith("unix:"):
        return _parse_unix(s[len("unix:"):])
    host, colon, port = s.rpartition(":")
    if not colon:
        raise ValueError("missing ':port'")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port!r}")
    return ListenAddress(_parse_host(host), int(port))


def _parse_unix(path: str) -> ListenAddress:
    if not path or "\0" in path:
        raise ValueError("the unix socket path is empty or contains NUL")
    if len(path.encode()) > UNIX_PATH_MAX:
        raise ValueError(f"the unix socket path is longer than {UNIX_PATH_MAX} bytes")
    return ListenAddress(unix_path=path)


def _parse_host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host[1:-1]!r} is not an IPv6 address") from None
        return host[1:-1]
    if ":" in host:
        raise ValueError("put an IPv6 address in brackets, e.g. [::1]:6033")
    if host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid host name or address")
    return host


# --------------------------------------------------------------------------
# Schema: rules and the helpers that declare fields with them
# --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rule:
    """How one key is read and checked."""

    kind: type                      # str, int, float or bool: the TOML type (env strings are converted)
    must_be: str                    # completes "<key> must be ...", e.g. "an integer >= 1"
    check: Callable[[Any], bool] = lambda value: True  # may raise ValueError with details
    normalize: Callable[[Any], Any] | None = None      # applied before check, e.g. str.lower
    optional: bool = False          # may be left unset (None)
    secret: bool = False            # masked by Config.redacted() and in error messages
    indirect: bool = False          # may be given as <key>_env or <key>_file instead
    path: bool = False              # a file path: relative to the config file's directory


def _setting(default: Any, rule: Rule) -> Any:
    if default is MISSING:
        return field(metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


def integer(default: Any, lo: int, hi: int | None = None, *, optional: bool = False) -> Any:
    must_be = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    return _setting(default, Rule(int, must_be, lambda v: lo <= v and (hi is None or v <= hi),
                                  optional=optional))


def seconds(default: float | None, *, positive: bool = False, optional: bool = False) -> Any:
    default = None if default is None else float(default)
    if positive:
        return _setting(default, Rule(float, "a number of seconds > 0", lambda v: v > 0,
                                      optional=optional))
    return _setting(default, Rule(float, "a number of seconds >= 0", lambda v: v >= 0,
                                  optional=optional))


def seconds_or_off(default: float, lo: float) -> Any:
    """0 (off: someone else's default applies) or a number of seconds >= lo."""
    return _setting(float(default), Rule(float, f"0 or a number of seconds >= {lo:g}", lambda v: v == 0 or v >= lo))


def choice(default: str, options: Sequence[str]) -> Any:
    must_be = "one of " + ", ".join(repr(o) for o in options)
    return _setting(default, Rule(str, must_be, lambda v: v in options, normalize=str.lower))


def text(default: Any, must_be: str = "a string", check: Callable[[Any], bool] | None = None) -> Any:
    return _setting(default, Rule(str, must_be, check or (lambda v: True)))


def flag(default: bool) -> Any:
    return _setting(default, Rule(bool, "true or false"))


def existing_file() -> Any:
    return _setting("", Rule(str, 'the path of an existing file (or "")', _file_exists, path=True))


# The login plugins a user may use (protocol/auth.py speaks them; config sits below protocol/, so
# the names are spelled here too, and tests/unit/test_config.py checks the two lists agree).
AUTH_PLUGINS = ("mysql_native_password", "caching_sha2_password", "sha256_password", "client_ed25519",
                "mysql_clear_password")
DEFAULT_AUTH_PLUGINS = AUTH_PLUGINS[:4]  # mysql_clear_password only when asked for


def plugin_list() -> Any:
    must_be = "a non-empty list of login plugins, from " + ", ".join(repr(p) for p in AUTH_PLUGINS)
    return _setting(DEFAULT_AUTH_PLUGINS, Rule(list, must_be, _known_plugins, normalize=_plugin_tuple))


def _plugin_tuple(value: list[Any]) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in value):
        raise ValueError("each plugin is a string")
    return tuple(dict.fromkeys(v.strip().lower() for v in value))  # in order, once each


def _known_plugins(value: tuple[str, ...]) -> bool:
    unknown = [v for v in value if v not in AUTH_PLUGINS]
    if unknown:
        raise ValueError(f"unknown plugin {unknown[0]!r}{_suggest(unknown[0], AUTH_PLUGINS)}")
    return bool(value)


def secret() -> Any:
    return _setting(None, Rule(str, "a string", optional=True, secret=True, indirect=True))


def native_hash() -> Any:
    must_be = "'*' followed by 40 hex digits (a mysql_native_password hash, as in mysql.user)"
    return _setting(None, Rule(str, must_be, lambda v: bool(_HASH.fullmatch(v)),
                               normalize=str.upper, optional=True, secret=True))


def address(default: str, *, can_disable: bool) -> Any:
    must_be = "'host:port', '[ipv6]:port', ':port' or 'unix:/path/to.sock'"
    if can_disable:
        return _setting(default, Rule(str, must_be + ' (or "" to turn it off)',
                                      lambda v: v == "" or _valid_listen(v)))
    return _setting(default, Rule(str, must_be, _valid_listen))


_HASH = re.compile(r"\*[0-9A-F]{40}")
_CHARSET = re.compile(r"[A-Za-z0-9_]+")


def _valid_listen(value: str) -> bool:
    parse_listen(value)  # raises ValueError with the reason
    return True


def _file_exists(path: str) -> bool:
    if path and not os.path.isfile(path):
        raise ValueError(f"no such file: {path}")
    return True


def _no_nul(value: str) -> bool:
    return "\0" not in value


# --------------------------------------------------------------------------
# The configuration dataclasses (= the schema)
# --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """[proxy]: the client-facing side."""

    listen: str = address("127.0.0.1:6033", can_disable=False)
    max_client_connections: int = integer(10000, 1)
    client_idle_timeout: float = seconds(0)
    shutdown_timeout: float = seconds(30)
    workers: int = integer(1, 1)
    server_version: str = text("", "a string without NUL characters", _no_nul)
    max_packet_size: int | None = integer(None, 1024, 1 << 30, optional=True)  # None: the server's
    tls_cert: str = existing_file()
    tls_key: str = existing_file()
    require_tls: bool = flag(False)
    # The RSA key pair clients encrypt their password with (caching_sha2_password's full
    # authentication and sha256_password over plain TCP); "": generated at start.
    rsa_private_key: str = existing_file()
    rsa_public_key: str = existing_file()

    @property
    def listen_address(self) -> ListenAddress:
        return parse_listen(self.listen)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """[backend]: the MySQL server behind the proxy."""

    host: str = text("127.0.0.1", "a non-empty string", bool)
    port: int = integer(3306, 1, 65535)
    unix_socket: str = text("")
    connect_timeout: float = seconds(5, positive=True)
    # TCP keepalive and TCP_USER_TIMEOUT of backend sockets (backend_adapter.dead_peer_detection); 0 = the OS's
    dead_connection_timeout: float = seconds_or_off(30, 1)
    probe_interval: float = seconds(5, positive=True)
    max_connections: int = integer(100, 1)
    charset: str = text("utf8mb4", "a character set name such as 'utf8mb4'",
                        lambda v: bool(_CHARSET.fullmatch(v)))
    ssl_mode: str = choice("disabled", SSL_MODES)
    ssl_ca: str = existing_file()
    ssl_cert: str = existing_file()
    ssl_key: str = existing_file()


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """[pool]: how backend connections are pooled (per user)."""

    mode: str = choice("transaction", POOL_MODES)
    max_size: int = integer(10, 1)
    min_idle: int = integer(0, 0)
    max_lifetime: float = seconds(3600, positive=True)
    idle_timeout: float | None = seconds(None, positive=True, optional=True)
    checkout_timeout: float = seconds(10, positive=True)
    max_waiting_clients: int = integer(1000, 0)
    ping_after: float = seconds(5)
    max_connecting: int = integer(4, 1)
    query_timeout: float = seconds(0)
    idle_transaction_timeout: float = seconds(0)
    result_buffer_bytes: int = integer(4194304, 65536)
    prepared_statement_cache_size: int = integer(256, 1)


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One [[users]] entry: an account clients log in to the proxy with."""

    name: str = text(MISSING, "a non-empty string", bool)
    password: str | None = secret()
    password_hash: str | None = native_hash()
    backend_user: str = text("", 'a string ("" = same as name)')
    backend_password: str | None = secret()
    max_size: int | None = integer(None, 1, optional=True)
    auth_plugins: tuple[str, ...] = plugin_list()

    def __post_init__(self) -> None:
        if not self.backend_user:
            object.__setattr__(self, "backend_user", self.name)
        if self.backend_password is None:
            object.__setattr__(self, "backend_password", self.password)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """[admin]: the admin console."""

    listen: str = address("127.0.0.1:6034", can_disable=True)
    user: str = text("admin", "a non-empty string", bool)
    password: str | None = secret()
    password_hash: str | None = native_hash()

    @property
    def enabled(self) -> bool:
        """Listening, and with a credential: the console is never open without one."""
        return self.listen != "" and (bool(self.password) or self.password_hash is not None)

    @property
    def listen_address(self) -> ListenAddress | None:
        return parse_listen(self.listen) if self.listen else None


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint."""

    listen: str = address("127.0.0.1:9106", can_disable=True)
    path: str = text("/metrics", "a URL path starting with '/'", lambda v: v.startswith("/"))

    @property
    def enabled(self) -> bool:
        return self.listen != ""

    @property
    def listen_address(self) -> ListenAddress | None:
        return parse_listen(self.listen) if self.listen else None


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]"""

    level: str = choice("info", LOG_LEVELS)
    format: str = choice("text", LOG_FORMATS)
    stats_period: float = seconds_or_off(60, 1)  # one stats line per pool this often (0 = off)


# Section name -> dataclass, in the order of the file. "users" is an array of tables.
SECTIONS: dict[str, type] = {
    "proxy": ProxyConfig,
    "backend": BackendConfig,
    "pool": PoolConfig,
    "users": UserConfig,
    "admin": AdminConfig,
    "metrics": MetricsConfig,
    "log": LogConfig,
}
ARRAY_SECTION = "users"


def _rules(cls: type) -> dict[str, Rule]:
    return {f.name: f.metadata["rule"] for f in fields(cls)}


# section -> key -> Rule
SCHEMA: dict[str, dict[str, Rule]] = {name: _rules(cls) for name, cls in SECTIONS.items()}


def _variants(key: str) -> tuple[str, str, str]:
    return key, f"{key}_env", f"{key}_file"


def _allowed_keys(section: str) -> list[str]:
    keys: list[str] = []
    for key, rule in SCHEMA[section].items():
        keys.extend(_variants(key) if rule.indirect else (key,))
    return keys


ALLOWED_KEYS: dict[str, list[str]] = {name: _allowed_keys(name) for name in SECTIONS}


# --------------------------------------------------------------------------
# Provenance: where each setting came from
# --------------------------------------------------------------------------

DEFAULT, FILE, ENV, CLI, ADMIN = "default", "file", "env", "cli", "admin"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one setting's value came from."""

    kind: str = DEFAULT          # DEFAULT, FILE, ENV, CLI (a command-line option) or ADMIN (a console SET)
    name: str = ""               # the config file, the environment variable, the option or the operator
    replaced: str | None = None  # ENV/CLI: the value the file gives it, which lost; ADMIN: the value before
                                 # (repr; secrets masked)

    def describe(self, source: str) -> str:
        """For messages: "set in FILE", "set by the environment variable X", "the default; ..."."""
        if self.kind == FILE:
            return f"set in {self.name}"
        instead = f", instead of {self.replaced} in {source}" if self.replaced is not None else ""
        if self.kind == ENV:
            return f"set by the environment variable {self.name}{instead}"
        if self.kind == CLI:
            return f"set by {self.name}{instead}"
        if self.kind == ADMIN:
            return f"set by {self.name}" + (f", instead of {self.replaced}" if self.replaced is not None else "")
        return "the default" if source == ENV_SOURCE else f"the default: not set in {source}"


@dataclass(frozen=True, slots=True)
class Override:
    """A setting from the command line, which wins over the file and the environment.

    `key` is "section.key" or "users[N].key" (N counting from 0); `value` is text,
    converted like an environment variable's; `given_by` names the option in messages.
    """

    key: str
    value: str
    given_by: str


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    users: tuple[UserConfig, ...] = ()
    admin: AdminConfig = field(default_factory=AdminConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = ENV_SOURCE
    warnings: tuple[str, ...] = ()
    # "section.key" / "users[N].key" -> where it came from; settings left at their default are absent
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False)
    overrides: tuple[Override, ...] = ()  # the command line's settings, applied again by a reload

    def user(self, name: str) -> UserConfig | None:
        return next((u for u in self.users if u.name == name), None)

    def pool_max_size(self, user_cfg: UserConfig) -> int:
        return user_cfg.max_size if user_cfg.max_size is not None else self.pool.max_size

    def origin(self, key: str) -> Origin:
        """Where the setting `key` ("proxy.listen", "users[0].password") came from."""
        return self.origins.get(key, Origin())

    def value(self, key: str) -> Any:
        """The value of the setting `key` ("proxy.listen", "users[0].name")."""
        label, _, name = key.rpartition(".")
        section, _, index = label.partition("[")
        table = self.users[int(index.rstrip("]"))] if index else getattr(self, section)
        return getattr(table, name)

    def describe(self, key: str, value: Any) -> str:
        """`key = value (where it came from)` for messages; a secret's value is masked."""
        shown = REDACTED if _is_secret(key) and value is not None else repr(value)
        return f"{key} = {shown} ({self.origin(key).describe(self.source)})"

    def redacted(self) -> dict[str, Any]:
        """The effective config as nested dicts, every secret replaced by "***"."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
            if name == ARRAY_SECTION:
                out[name] = [_redacted_table(u) for u in self.users]
            else:
                out[name] = _redacted_table(getattr(self, name))
        return out


def _is_secret(key: str) -> bool:
    """Is the setting "section.key" / "users[N].key" a secret?"""
    label, _, name = key.rpartition(".")
    rule = SCHEMA.get(label.split("[")[0], {}).get(name)
    return rule is not None and rule.secret


def _redacted_table(obj: Any) -> dict[str, Any]:
    return {f.name: redact(getattr(obj, f.name)) if f.metadata["rule"].secret
            else getattr(obj, f.name) for f in fields(obj)}


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

_INVALID = object()  # a value that failed conversion


@dataclass
class _Context:
    """State of one load_config() run."""

    source: str
    base_dir: str | None
    environ: Mapping[str, str]
    # (table, key) -> the environment variable or option that set it (key as given: password_file...)
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    # (table, key) -> the value the file gives it (key as given), before anything overrides it
    file_values: dict[tuple[str, str], Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def given_by(self, table: str, key: str) -> str | None:
        """The environment variable or command-line option that set `key`, or None."""
        origin = self.origins.get((table, key))
        return origin.name if origin is not None else None

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def raise_errors(self) -> None:
        if self.errors:
            lines = [f"config error in {self.source}: {e}" for e in self.errors]
            raise ConfigError("\n".join(lines), lines)


@dataclass
class _Raw:
    """The settings as plain dicts, before checking: section -> {key: value}, users -> [{...}]."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: list[dict[str, Any]] = field(default_factory=list)

    def tables(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(label, section, values) for every table, e.g. ("users[0]", "users", {...})."""
        for name in SECTIONS:
            if name == ARRAY_SECTION:
                for i, table in enumerate(self.users):
                    yield f"users[{i}]", name, table
            else:
                yield name, name, self.sections.setdefault(name, {})


def load_config(path: str | None, environ: Mapping[str, str] = os.environ,
                overrides: Sequence[Override] = ()) -> Config:
    """Load, check and return the configuration.

    `path` is a TOML file (None: environment only). MYSQLPOOL_* variables in
    `environ` override the file, and `overrides` (the command line's settings)
    override both. Raises ConfigError naming every problem.
    """
    source = os.fspath(path) if path is not None else ENV_SOURCE
    base_dir = os.path.dirname(os.path.abspath(source)) if path is not None else None
    ctx = _Context(source, base_dir, environ)
    raw = _split_document(_read_toml(source, ctx) if path is not None else {}, ctx)
    ctx.file_values = {(label, key): value for label, _, table in raw.tables() for key, value in table.items()}
    _apply_environment(raw, ctx)
    _apply_overrides(raw, overrides, ctx)
    ctx.raise_errors()
    checked = {label: (section, _check_table(label, section, table, ctx))
               for label, section, table in raw.tables()}
    ctx.raise_errors()
    config = _assemble(checked, ctx.source)
    config = replace(config, origins=_origins(ctx), overrides=tuple(overrides))
    for check in CHECKS:
        check(config, ctx)
    ctx.raise_errors()
    return replace(config, warnings=tuple(ctx.warnings))


def peek_log_format(path: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """[log] format, read as far as a config that may not load allows (to report its errors in it)."""
    value = environ.get(env_var_name("log", "format"))
    if value is None and path is not None:
        try:
            with open(path, "rb") as fh:
                value = tomllib.load(fh).get("log", {}).get("format")
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            value = None
    value = value.strip().lower() if isinstance(value, str) else ""
    return value if value in LOG_FORMATS else "text"


def _read_toml(path: str, ctx: _Context) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        ctx.error(f"cannot read the config file: {e.strerror or e}")
    except tomllib.TOMLDecodeError as e:
        ctx.error(f"not valid TOML: {e}")
    ctx.raise_errors()
    raise AssertionError("unreachable")


def _split_document(doc: dict[str, Any], ctx: _Context) -> _Raw:
    raw = _Raw()
    for name, value in doc.items():
        if name not in SECTIONS:
            ctx.error(f"unknown key {name!r}{_suggest_top_level(name)}")
        elif name == ARRAY_SECTION:
            raw.users = _split_users(value, ctx)
        elif not isinstance(value, dict):
            ctx.error(f"{name} must be a table ([{name}]), got a value of type {type(value).__name__}")
        else:
            raw.sections[name] = _known_keys(name, name, value, ctx)
    return raw


def _split_users(value: Any, ctx: _Context) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        ctx.error("users must be an array of tables: write each user as a [[users]] table")
        return []
    return [_known_keys(f"users[{i}]", ARRAY_SECTION, t, ctx) for i, t in enumerate(value)]


def _known_keys(label: str, section: str, table: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    """Copy of `table` without unknown keys, which are reported with a suggestion."""
    allowed = ALLOWED_KEYS[section]
    for key in table:
        if key not in allowed:
            ctx.error(f"unknown key '{label}.{key}'{_suggest(key, allowed)}")
    return {k: v for k, v in table.items() if k in allowed}


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _suggest_top_level(name: str) -> str:
    """For a key outside any section: a section with a similar name, or the section it belongs in."""
    hint = _suggest(name, list(SECTIONS))
    if hint:
        return hint
    homes = [f"{section}.{name}" for section in SECTIONS if name in ALLOWED_KEYS[section]]
    return f" (did you mean {homes[0]!r}?)" if homes else ""


# -- environment overrides --------------------------------------------------

_USER_VAR = re.compile(r"(0|[1-9][0-9]*)_([A-Z0-9_]+)")


def env_var_name(section: str, key: str, index: int | None = None) -> str:
    """The variable that overrides `section.key` (or users[index].key)."""
    if index is not None:
        return f"{ENV_PREFIX}{section.upper()}_{index}_{key.upper()}"
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _parse_env_var(var: str) -> tuple[str, int | None, str] | None:
    """MYSQLPOOL_POOL_MAX_SIZE -> ("pool", None, "max_size"); None if no such setting."""
    rest = var[len(ENV_PREFIX):]
    for section in SECTIONS:
        head = section.upper() + "_"
        if not rest.startswith(head):
            continue
        tail, index = rest[len(head):], None
        if section == ARRAY_SECTION:
            match = _USER_VAR.fullmatch(tail)
            if not match:
                return None
            index, tail = int(match[1]), match[2]
        key = tail.lower()
        if key in ALLOWED_KEYS[section] and tail == key.upper():
            return section, index, key
    return None


def _unknown_var(var: str) -> str:
    known = [env_var_name(s, k) for s in SECTIONS if s != ARRAY_SECTION for k in ALLOWED_KEYS[s]]
    match = re.match(rf"{ENV_PREFIX}USERS_(\d+)_", var)
    index = int(match[1]) if match else 0
    known += [env_var_name(ARRAY_SECTION, k, index) for k in ALLOWED_KEYS[ARRAY_SECTION]]
    close = difflib.get_close_matches(var, known, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown environment variable {var}{hint}; MYSQLPOOL_* variables must name a setting"


def _apply_environment(raw: _Raw, ctx: _Context) -> None:
    """Overlay MYSQLPOOL_* variables on `raw` (env wins), remembering where each came from."""
    found: list[tuple[str, str, int | None, str]] = []
    for var in sorted(ctx.environ):
        if not var.startswith(ENV_PREFIX) or var in (ENV_CONFIG_PATH, ENV_BUILD_SWITCH):
            continue
        target = _parse_env_var(var)
        if target is None:
            ctx.error(_unknown_var(var))
        else:
            found.append((var, *target))
    _add_env_users(raw, [(var, index) for var, _, index, _ in found if index is not None], ctx)
    for var, section, index, key in found:
        if index is not None and index >= len(raw.users):
            continue  # a gap, already reported
        label = section if index is None else f"users[{index}]"
        table = raw.users[index] if index is not None else raw.sections.setdefault(section, {})
        _overlay(label, section, table, key, ctx.environ[var], Origin(ENV, var), ctx)


_OVERRIDE_KEY = re.compile(r"(?:([a-z]+)|users\[(0|[1-9][0-9]*)\])\.([a-z_]+)")


def _apply_overrides(raw: _Raw, overrides: Sequence[Override], ctx: _Context) -> None:
    """Overlay the command line's settings on `raw` (they win over the file and the environment)."""
    for override in overrides:
        match = _OVERRIDE_KEY.fullmatch(override.key)
        section = (match[1] or ARRAY_SECTION) if match else ""
        if not match or section not in SECTIONS or match[3] not in ALLOWED_KEYS[section] \
                or (section == ARRAY_SECTION) != (match[2] is not None):
            raise ValueError(f"no setting {override.key!r} (given by {override.given_by})")
        if match[2] is None:
            label, table = section, raw.sections.setdefault(section, {})
        else:
            index = int(match[2])
            raw.users.extend({} for _ in range(len(raw.users), index + 1))
            label, table = f"users[{index}]", raw.users[index]
        _overlay(label, section, table, match[3], override.value, Origin(CLI, override.given_by), ctx)


def _add_env_users(raw: _Raw, user_vars: list[tuple[str, int]], ctx: _Context) -> None:
    """Append the users that only the environment defines; their indexes must follow on."""
    indexes = {index for _, index in user_vars}
    have = len(raw.users)
    new = sorted(i for i in indexes if i >= have)
    if not new:
        return
    missing = [i for i in range(have, new[-1]) if i not in indexes]
    if missing:
        var = next(v for v, i in user_vars if i > missing[0])
        ctx.error(f"{var}: there is no users[{missing[0]}]; the file defines {have} user(s), "
                  f"so users added by the environment must be numbered {have}, {have + 1}, ...")
        return
    raw.users.extend({} for _ in new)


def _overlay(label: str, section: str, table: dict[str, Any], key: str, value: str, origin: Origin,
             ctx: _Context) -> None:
    """Set `key` of one table from an environment variable or an option, remembering `origin`."""
    base = _indirect_base(section, key)
    origin = replace(origin, replaced=_replaced(label, section, base or key, ctx))
    if base is not None:
        for variant in _variants(base):
            other = ctx.origins.get((label, variant))
            if variant != key and other is not None:
                if other.kind == origin.kind:
                    ctx.error(f"{other.name} and {origin.name} both set {label}.{base}; set only one")
                del ctx.origins[(label, variant)]  # the command line wins over the environment
            table.pop(variant, None)  # replaces the file's password / _env / _file
    ctx.origins[(label, key)] = origin
    rule = SCHEMA[section].get(key)
    if rule is not None and rule.optional and not rule.indirect and value.strip().lower() in ("", "none"):
        table.pop(key, None)  # "unset": back to the default
        return
    table[key] = value


def _replaced(label: str, section: str, base: str, ctx: _Context) -> str | None:
    """What the file says for `base` (or one of its _env/_file forms), for the record; None if nothing."""
    rule = SCHEMA[section][base]
    for variant in _variants(base) if rule.indirect else (base,):
        if (label, variant) in ctx.file_values:
            return REDACTED if rule.secret else repr(ctx.file_values[(label, variant)])
    return None


def _origins(ctx: _Context) -> dict[str, Origin]:
    """"table.key" -> Origin for every setting the file, the environment or the command line gave."""
    found = {f"{label}.{_base_key(label, key)}": Origin(FILE, ctx.source) for label, key in ctx.file_values}
    found.update((f"{label}.{_base_key(label, key)}", origin) for (label, key), origin in ctx.origins.items())
    return found


def _base_key(label: str, key: str) -> str:
    return _indirect_base(label.split("[")[0], key) or key


def _indirect_base(section: str, key: str) -> str | None:
    """"password" for password / password_env / password_file; None for other keys."""
    for name, rule in SCHEMA[section].items():
        if rule.indirect and key in _variants(name):
            return name
    return None


# -- checking one table -----------------------------------------------------

def _check_table(label: str, section: str, table: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    """The checked values of one table (keys left out take their defaults)."""
    _resolve_indirect(label, section, table, ctx)
    values: dict[str, Any] = {}
    for f in fields(SECTIONS[section]):
        if f.name not in table:
            if f.default is MISSING:
                ctx.error(f"{label}.{f.name} is required")
            continue
        value = _check_value(label, f.name, f.metadata["rule"], table[f.name], ctx)
        if value is not _INVALID:
            values[f.name] = value
    return values


def _check_value(label: str, key: str, rule: Rule, value: Any, ctx: _Context) -> Any:
    var = ctx.given_by(label, key)
    converted = _convert(rule, value, from_env=var is not None)
    detail = ""
    try:
        if converted is not _INVALID:
            if rule.path and converted and var is None:
                converted = _from_config_dir(converted, ctx)
            if rule.normalize:
                converted = rule.normalize(converted)
            if rule.check(converted):
                return converted
    except ValueError as e:
        detail = f" ({e})"
    origin = f" (from {var})" if var else ""
    ctx.error(f"{label}.{key} must be {rule.must_be}, got {_show(rule, value)}{detail}{origin}")
    return _INVALID


def _convert(rule: Rule, value: Any, *, from_env: bool) -> Any:
    """`value` as rule.kind (env strings parsed, ints accepted as seconds), or _INVALID."""
    if rule.kind is bool:  # TOML true/false; from the environment also 1/0, yes/no, on/off
        if from_env and isinstance(value, str):
            value = _ENV_BOOLEANS.get(value.strip().lower(), _INVALID)
        return value if isinstance(value, bool) else _INVALID
    if rule.kind is list:  # a TOML array; from the environment, comma-separated
        if from_env and isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return value if isinstance(value, list) else _INVALID
    if from_env and isinstance(value, str) and rule.kind is not str:
        try:
            value = rule.kind(value.strip())
        except ValueError:
            return _INVALID
    if isinstance(value, bool):
        return _INVALID
    if rule.kind is float and isinstance(value, (int, float)):
        try:
            value = float(value)
        except OverflowError:
            return _INVALID
        return value if math.isfinite(value) else _INVALID
    return value if isinstance(value, rule.kind) else _INVALID


_ENV_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}


def _show(rule: Rule, value: Any) -> str:
    """`value` for an error message; secrets are described, never shown."""
    if not rule.secret:
        return repr(value)
    if isinstance(value, str):
        return f"a {len(value)}-character string (not shown)"
    return f"a value of type {type(value).__name__} (not shown)"


def _from_config_dir(path: str, ctx: _Context) -> str:
    if ctx.base_dir is None:
        return path
    return os.path.join(ctx.base_dir, os.path.expanduser(path))


def _resolve_indirect(label: str, section: str, table: dict[str, Any], ctx: _Context) -> None:
    """Replace X_env / X_file by X, read from the environment variable or file they name."""
    for key, rule in SCHEMA[section].items():
        if not rule.indirect:
            continue
        given = [k for k in _variants(key) if k in table]
        if len(given) > 1:
            ctx.error("set only one of " + ", ".join(f"{label}.{k}" for k in given))
        elif given and given[0] != key:
            name, where = given[0], table[given[0]]
            secret_value = _read_indirect(label, name, where, ctx)
            if secret_value is not None:
                table[key] = secret_value
        for k in given:
            if k != key:
                table.pop(k)


def _read_indirect(label: str, name: str, where: Any, ctx: _Context) -> str | None:
    var = ctx.given_by(label, name)
    origin = f" (from {var})" if var else ""
    if not isinstance(where, str) or not where:
        what = "an environment variable name" if name.endswith("_env") else "a file path"
        ctx.error(f"{label}.{name} must be {what}, got {where!r}{origin}")
        return None
    if name.endswith("_env"):
        if where not in ctx.environ:
            ctx.error(f"{label}.{name}: environment variable {where} is not set{origin}")
            return None
        return ctx.environ[where]
    path = where if var else _from_config_dir(where, ctx)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            content = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        ctx.error(f"{label}.{name}: cannot read {path}: {reason}{origin}")
        return None
    return _strip_newline(content)


def _strip_newline(s: str) -> str:
    for ending in ("\r\n", "\n"):
        if s.endswith(ending):
            return s[: -len(ending)]
    return s


def _assemble(checked: dict[str, tuple[str, dict[str, Any]]], source: str) -> Config:
    sections = {label: SECTIONS[section](**values)
                for label, (section, values) in checked.items() if section != ARRAY_SECTION}
    users = tuple(UserConfig(**values)
                  for section, values in checked.values() if section == ARRAY_SECTION)
    return Config(**sections, users=users, source=source)


# --------------------------------------------------------------------------
# Cross-key checks: each looks at the assembled Config and reports to ctx
# --------------------------------------------------------------------------

def _check_users(cfg: Config, ctx: _Context) -> None:
    if not cfg.users:
        ctx.error("users: at least one [[users]] entry is required "
                  "(or set MYSQLPOOL_USERS_0_NAME and MYSQLPOOL_USERS_0_PASSWORD)")
    first_index: dict[str, int] = {}
    for i, user in enumerate(cfg.users):
        label = f"users[{i}]"
        if user.name in first_index:
            ctx.error(f"{label}.name {user.name!r} is already used by users[{first_index[user.name]}]")
        first_index.setdefault(user.name, i)
        _check_user_credentials(label, user, ctx)
        if user.max_size is not None and user.max_size < cfg.pool.min_idle:
            ctx.error(f"{label}.max_size ({user.max_size}) must be >= pool.min_idle "
                      f"({cfg.pool.min_idle})")


def _check_user_credentials(label: str, user: UserConfig, ctx: _Context) -> None:
    if user.password is not None and user.password_hash is not None:
        ctx.error(f"{label}.password and {label}.password_hash are both set; set only one")
    elif user.password is None and user.password_hash is None:
        ctx.error(f"{label}.password (or password_env / password_file) or {label}.password_hash "
                  f"is required for user {user.name!r}; for an empty password write password = \"\"")
    elif user.password is None and user.auth_plugins == ("client_ed25519",):
        ctx.error(f"{label}.auth_plugins allows only client_ed25519, which needs the password: user {user.name!r} "
                  f"has only password_hash; set password, or add another plugin")
    elif user.backend_password is None:
        ctx.error(f"{label}.backend_password (or backend_password_env / backend_password_file) "
                  f"is required for user {user.name!r}: only password_hash is given, which lets "
                  f"the proxy check clients' passwords, but the proxy cannot log in to the "
                  f"server with a hash")


def _check_pool(cfg: Config, ctx: _Context) -> None:
    pool, backend = cfg.pool, cfg.backend
    if pool.min_idle > pool.max_size:
        ctx.error(f"pool.min_idle must be <= pool.max_size ({pool.max_size}), got {pool.min_idle}")
    for i, user in enumerate(cfg.users):
        size = cfg.pool_max_size(user)
        if size > backend.max_connections:
            ctx.warn(f"the pool of users[{i}] ({user.name!r}) may grow to {size} connections but "
                     f"backend.max_connections is {backend.max_connections}")
    wanted = pool.min_idle * len(cfg.users)
    if wanted > backend.max_connections:
        ctx.warn(f"pool.min_idle ({pool.min_idle}) x {len(cfg.users)} users = {wanted} idle "
                 f"connections, more than backend.max_connections ({backend.max_connections})")


def _check_pair(label_a: str, a: str, label_b: str, b: str, ctx: _Context) -> None:
    if bool(a) != bool(b):
        given, missing = (label_a, label_b) if a else (label_b, label_a)
        ctx.error(f"{missing} is required because {given} is set ({label_a} and {label_b} "
                  f"go together)")


def _check_tls(cfg: Config, ctx: _Context) -> None:
    proxy, backend = cfg.proxy, cfg.backend
    _check_pair("proxy.tls_cert", proxy.tls_cert, "proxy.tls_key", proxy.tls_key, ctx)
    if proxy.require_tls and not (proxy.tls_cert and proxy.tls_key):
        ctx.error("proxy.require_tls = true needs proxy.tls_cert and proxy.tls_key (the certificate and key "
                  "the proxy offers TLS with); set both, or set require_tls = false")
    _check_pair("backend.ssl_cert", backend.ssl_cert, "backend.ssl_key", backend.ssl_key, ctx)
    if backend.ssl_mode in ("verify_ca", "verify_identity") and not backend.ssl_ca:
        ctx.error(f"backend.ssl_ca is required when backend.ssl_mode is {backend.ssl_mode!r}")
    if backend.ssl_mode == "disabled" and (backend.ssl_ca or backend.ssl_cert or backend.ssl_key):
        ctx.warn("backend.ssl_ca/ssl_cert/ssl_key are set but backend.ssl_mode is 'disabled', "
                 "so they are not used")


def _check_tls_files(cfg: Config, ctx: _Context) -> None:
    """Load every TLS file the proxy will use, so that one it cannot use is refused now."""
    proxy, backend = cfg.proxy, cfg.backend
    if proxy.tls_cert and proxy.tls_key:
        _check_key_pair(cfg, ctx, "proxy.tls_cert", proxy.tls_cert, "proxy.tls_key", proxy.tls_key)
    if backend.ssl_mode == "disabled":
        return
    if backend.ssl_ca:
        _check_pem(cfg, ctx, "backend.ssl_ca", backend.ssl_ca, "CA certificate")
    if backend.ssl_cert and backend.ssl_key:
        _check_key_pair(cfg, ctx, "backend.ssl_cert", backend.ssl_cert, "backend.ssl_key", backend.ssl_key)


def _check_key_pair(cfg: Config, ctx: _Context, cert_key: str, cert: str, key_key: str, key: str) -> None:
    if not (_check_pem(cfg, ctx, cert_key, cert, "certificate") and _readable(cfg, ctx, key_key, key)):
        return
    with open(key, "rb") as fh:
        encrypted = b"ENCRYPTED" in fh.read(1 << 20)
    if encrypted:
        ctx.error(f"{cfg.describe(key_key, key)}: the key is encrypted with a passphrase, which the proxy "
                  f"cannot ask for; store it decrypted (openssl pkey -in KEY -out NEW_KEY) and readable only "
                  f"by the proxy's user")
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            problem = (f"this key does not belong to the certificate in {cert_key} ({cert!r}); "
                       f"give the key the certificate was made for")
        else:
            problem = (f"not a PEM private key ({_ssl_reason(e)}); give the key file "
                       f"('-----BEGIN PRIVATE KEY-----')")
        ctx.error(f"{cfg.describe(key_key, key)}: {problem}")


def _check_rsa_keys(cfg: Config, ctx: _Context) -> None:
    """proxy.rsa_private_key (and rsa_public_key, which must be its own): usable RSA keys of 2048 bits or more."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    proxy = cfg.proxy
    if proxy.rsa_public_key and not proxy.rsa_private_key:
        ctx.error("proxy.rsa_public_key is set without proxy.rsa_private_key; set both (or only the private key, "
                  "from which the public key is derived)")
        return
    if not proxy.rsa_private_key or not _readable(cfg, ctx, "proxy.rsa_private_key", proxy.rsa_private_key):
        return
    with open(proxy.rsa_private_key, "rb") as fh:
        pem = fh.read(1 << 20)
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        private = None
    if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < 2048:
        ctx.error(f"{cfg.describe('proxy.rsa_private_key', proxy.rsa_private_key)}: not an unencrypted PEM RSA "
                  f"private key of at least 2048 bits (make one with: openssl genrsa -out private_key.pem 2048)")
        return
    if not proxy.rsa_public_key or not _readable(cfg, ctx, "proxy.rsa_public_key", proxy.rsa_public_key):
        return
    with open(proxy.rsa_public_key, "rb") as fh:
        public_pem = fh.read(1 << 20)
    try:
        public = serialization.load_pem_public_key(public_pem)
    except ValueError:
        public = None
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != private.public_key().public_numbers():
        ctx.error(f"{cfg.describe('proxy.rsa_public_key', proxy.rsa_public_key)}: not the PEM public key of "
                  f"proxy.rsa_private_key (make it with: openssl rsa -in private_key.pem -pubout -out public_key.pem)")


def _check_pem(cfg: Config, ctx: _Context, name: str, path: str, what: str) -> bool:
    """Is `path` readable and does it hold at least one PEM certificate?"""
    if not _readable(cfg, ctx, name, path):
        return False
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        ctx.error(f"{cfg.describe(name, path)}: not a PEM {what} ({_ssl_reason(e)}); give a file that "
                  f"holds one ('-----BEGIN CERTIFICATE-----')")
        return False
    return True


def _readable(cfg: Config, ctx: _Context, name: str, path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError as e:
        ctx.error(f"{cfg.describe(name, path)}: cannot read it ({e.strerror or e}); make it readable by the "
                  f"user the proxy runs as (uid {os.geteuid()})")
        return False


def _ssl_reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason, e.g. "no certificate or crl found" (without _ssl.c's line number)."""
    reason = error.reason or re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(error.strerror or error))
    return reason.replace("_", " ").lower()


def _check_admin(cfg: Config, ctx: _Context) -> None:
    admin = cfg.admin
    if admin.password is not None and admin.password_hash is not None:
        ctx.error("admin.password and admin.password_hash are both set; set only one")
    if admin.password == "":
        ctx.error('admin.password must not be empty (to turn the console off, set admin.listen = "")')
    elif admin.listen and not admin.enabled and (admin.listen, admin.user) != _ADMIN_DEFAULTS:
        # Only when the console was asked for: left at its defaults, it is simply off.
        ctx.warn("the admin console is off: admin.listen or admin.user is set but no admin.password or "
                 "admin.password_hash is given")


_ADMIN_DEFAULTS = (AdminConfig().listen, AdminConfig().user)


def _check_listeners(cfg: Config, ctx: _Context) -> None:
    """proxy, admin and metrics must not listen on the same address (port 0 = any is fine)."""
    listeners = [("proxy.listen", cfg.proxy.listen)]
    if cfg.admin.enabled:
        listeners.append(("admin.listen", cfg.admin.listen))
    if cfg.metrics.enabled:
        listeners.append(("metrics.listen", cfg.metrics.listen))
    seen: dict[ListenAddress, str] = {}
    for label, value in listeners:
        address = parse_listen(value)
        if address in seen and (address.is_unix or address.port != 0):
            ctx.error(f"{label} must differ from {seen[address]} (both are {value!r})")
        seen.setdefault(address, label)


CHECKS: tuple[Callable[[Config, _Context], None], ...] = (
    _check_users, _check_pool, _check_tls, _check_tls_files, _check_rsa_keys, _check_admin, _check_listeners,
)


# --------------------------------------------------------------------------
# One setting changed at run time (the admin console's SET)
# --------------------------------------------------------------------------

def set_setting(config: Config, key: str, value: str, origin: Origin) -> Config:
    """`config` with the one setting `key` ("pool.max_size", "users[0].max_size") set to `value`.

    `value` is text, converted as an environment variable's is ("none" or "" unsets an optional
    setting; a relative file path is taken from the config file's folder, as in the file), and
    checked as load_config() checks it: the key's rule, then the cross-key checks (whose warnings
    replace `config`'s). The new Origin records `origin` and the value before.
    Raises KeyError for no such setting, ConfigError (one problem a line) for a value refused.
    """
    label, section, name = _setting_key(config, key)
    rule = SCHEMA[section][name]
    ctx = _Context(config.source, None, os.environ)
    ctx.origins[(label, name)] = origin
    if rule.optional and value.strip().lower() in ("", "none", "null"):
        checked = setting_default(key)
    else:
        if rule.path and value and config.source != ENV_SOURCE:  # relative to the file, as in the file
            value = os.path.join(os.path.dirname(os.path.abspath(config.source)), os.path.expanduser(value))
        checked = _check_value(label, name, rule, value, ctx)
        _raise_unprefixed(ctx)
    before = config.value(key)
    if section == ARRAY_SECTION:
        index = int(label[len("users["):-1])
        users = list(config.users)
        users[index] = replace(users[index], **{name: checked})
        new = replace(config, users=tuple(users))
    else:
        new = replace(config, **{section: replace(getattr(config, section), **{name: checked})})
    shown = REDACTED if rule.secret and before is not None else repr(before)
    new = replace(new, origins={**config.origins, key: replace(origin, replaced=shown)}, warnings=())
    for check in CHECKS:
        check(new, ctx)
    _raise_unprefixed(ctx)
    return replace(new, warnings=tuple(ctx.warnings))


def setting_default(key: str) -> Any:
    """The default of `key` ("pool.max_size", "users[0].max_size"); None for a required one."""
    label, _, name = key.rpartition(".")
    cls = SECTIONS[label.split("[")[0]]
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is not MISSING:
        return f.default
    return None if f.default_factory is MISSING else f.default_factory()


def _setting_key(config: Config, key: str) -> tuple[str, str, str]:
    """(label, section, name) of a setting of `config`; KeyError if there is none such."""
    match = _OVERRIDE_KEY.fullmatch(key)
    section = (match[1] or ARRAY_SECTION) if match else ""
    if not match or section not in SECTIONS or match[3] not in SCHEMA[section] \
            or (section == ARRAY_SECTION) != (match[2] is not None) \
            or (match[2] is not None and int(match[2]) >= len(config.users)):
        raise KeyError(key)
    return (section if match[2] is None else f"users[{match[2]}]"), section, match[3]


def _raise_unprefixed(ctx: _Context) -> None:
    """ConfigError with the problems as they are (a SET names no file)."""
    if ctx.errors:
        raise ConfigError("\n".join(ctx.errors), ctx.errors)
