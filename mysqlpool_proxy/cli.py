# Command line entry point (`mysqlpool-proxy`, `python -m mysqlpool_proxy`).
#
# What this module owns: the command line options, choosing the config file,
# the quick-start options (--backend, --user, ... : settings that override the
# file and the environment, a password never on the command line), reporting
# what stops a start (a ConfigError, or a StartupProblem of startup.py: one line
# each, JSON log lines in JSON mode, exit status 2), --check-config (the config,
# then the binds and the backend host), --print-example-config, and setting up
# logging before the server starts, with one line on the settings that came
# from the environment. The server itself is mysqlpool_proxy.app.run(config).
"""The mysqlpool-proxy command."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from mysqlpool_proxy import BUILD, __version__
from mysqlpool_proxy.config import (
    DEFAULT_CONFIG_PATH,
    ENV,
    ENV_CONFIG_PATH,
    AdminConfig,
    Config,
    ConfigError,
    MetricsConfig,
    Override,
    ProxyConfig,
    env_var_name,
    load_config,
    peek_log_format,
)
from mysqlpool_proxy.logs import FORMATS, LEVELS, log_event, setup_logging

EXIT_CONFIG_ERROR = 2
EXAMPLE_CONFIG = "config.example.toml"  # package data

EPILOG = f"""\
configuration:
  Without -c, the config is ${ENV_CONFIG_PATH} if set, else {DEFAULT_CONFIG_PATH} if it exists,
  else the MYSQLPOOL_* environment variables alone. MYSQLPOOL_<SECTION>_<KEY> overrides
  a key of the file (MYSQLPOOL_POOL_MAX_SIZE=20, MYSQLPOOL_USERS_0_NAME=app); the quick-start
  options override both. Every key: mysqlpool-proxy --print-example-config

ports (defaults):
  {ProxyConfig().listen:<16} proxy.listen     MySQL clients
  {AdminConfig().listen:<16} admin.listen     admin console (MySQL protocol; off until admin.password is set)
  {MetricsConfig().listen:<16} metrics.listen   HTTP: {MetricsConfig().path} (Prometheus), /healthz (alive),
                                    /readyz (ready to serve: the server answers)

signals:
  SIGTERM   drain: stop accepting, let clients finish their transaction (proxy.shutdown_timeout), exit 0
  SIGINT    the same, with at most 1 s to finish; a second SIGTERM/SIGINT stops at once
  SIGHUP    re-read the config file (a bad one is refused and the running one kept)

exit status:
  0 stopped cleanly (or the config is OK), 1 an unexpected error,
  2 a bad config or something that stops the start (each problem on one line, naming its key)

documentation:
  README.md at the top of the source tree: install, quick start, every setting, the errors
  clients can see, metrics and alerts, the admin console, running it as a service;
  deploy/ beside it: a systemd unit, a container image, a Kubernetes sidecar, dashboards.
"""

QUICK_START = """\
The simplest case, without a config file: these override the file and the environment.
The password is never on the command line: it is asked for on the terminal, or read
from the environment variable that --password-env names."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mysqlpool-proxy",
        description="MySQL/MariaDB connection-pooling proxy: clients connect to it as to the server; it "
                    "lends them server connections from a small pool at transaction boundaries.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML config file")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration, that each listener can bind its address and that "
                             "backend.host resolves, print the result and exit (0 = OK, 2 = error)")
    parser.add_argument("--no-bind-check", action="store_true",
                        help="with --check-config: skip the binds (to check a new file for a proxy that "
                             "already listens on those addresses)")
    parser.add_argument("--print-example-config", action="store_true",
                        help="print a config file with every setting at its default, and exit")
    parser.add_argument("-V", "--version", action="version", version=f"mysqlpool-proxy {__version__} ({BUILD})")
    parser.add_argument("--log-format", choices=FORMATS, help="override [log] format")
    parser.add_argument("--log-level", choices=LEVELS, type=str.lower, help="override [log] level")
    quick = parser.add_argument_group("quick start", QUICK_START)
    quick.add_argument("--backend", metavar="HOST[:PORT]",
                       help="the server: host and port (3306 if left out), [IPv6]:PORT, or unix:/path/to.sock")
    quick.add_argument("--user", metavar="NAME",
                       help="the account clients log in with; the proxy logs in to the server with the "
                            "same name and password")
    quick.add_argument("--password-env", metavar="VAR",
                       help="read --user's password from the environment variable VAR")
    quick.add_argument("--listen", metavar="ADDR", help=f"where clients connect (default {ProxyConfig().listen})")
    return parser


def default_config_path(environ: Mapping[str, str],
                        fallback: str = DEFAULT_CONFIG_PATH) -> str | None:
    """$MYSQLPOOL_CONFIG, else `fallback` if it exists, else None (environment only)."""
    if environ.get(ENV_CONFIG_PATH):
        return environ[ENV_CONFIG_PATH]
    return fallback if os.path.exists(fallback) else None


def example_config() -> str:
    """config.example.toml, as shipped in the package."""
    return resources.files("mysqlpool_proxy").joinpath(EXAMPLE_CONFIG).read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_example_config:
        sys.stdout.write(example_config())
        return 0
    path = args.config or default_config_path(os.environ)
    fmt = args.log_format or peek_log_format(path, os.environ)
    try:
        overrides = quick_start_overrides(args, os.environ)
        config = load_config(path, os.environ, overrides)
    except ConfigError as e:
        return _report_config_error(e, fmt)
    except QuickStartError as e:
        parser.error(str(e))  # exits 2 with the usage
    config = _with_log_overrides(config, args)
    if args.check_config:
        return _report_check(config, binds=not args.no_bind_check)
    setup_logging(config.log.level, config.log.format)
    _log_config(config)
    from mysqlpool_proxy.app import run

    return run(config)


# -- quick start -----------------------------------------------------------------------------


class QuickStartError(Exception):
    """A quick-start option that cannot be used as given."""


def quick_start_overrides(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Override]:
    """The settings --listen, --backend, --user and --password-env give (a password prompt included)."""
    found = []
    if args.listen is not None:
        found.append(Override("proxy.listen", args.listen, "--listen"))
    if args.backend is not None:
        found += backend_overrides(args.backend)
    if args.user is not None:
        found.append(Override("users[0].name", args.user, "--user"))
    if args.password_env is not None:
        found.append(Override("users[0].password_env", args.password_env, "--password-env"))
    elif args.user is not None and not _password_in_environment(environ):
        found.append(Override("users[0].password", _ask_password(args.user), "the password prompt"))
    return found


def backend_overrides(text: str) -> list[Override]:
    """--backend HOST[:PORT] | [IPv6][:PORT] | unix:/path as backend settings."""
    if text.startswith("unix:"):
        return [Override("backend.unix_socket", text.removeprefix("unix:"), "--backend")]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port is None:
            raise QuickStartError(f"--backend {text}: write [IPv6]:PORT")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None  # a name, an IPv4 address, or an IPv6 address without a port
    found = [Override("backend.host", host, "--backend")]
    if port is not None:
        found.append(Override("backend.port", port, "--backend"))
    return found


def _password_in_environment(environ: Mapping[str, str]) -> bool:
    return any(env_var_name("users", key, 0) in environ
               for key in ("password", "password_env", "password_file"))


def _ask_password(user: str) -> str:
    if not sys.stdin.isatty():
        raise QuickStartError(f"--user {user} needs the password of the server account {user!r}: name the "
                              f"environment variable that holds it with --password-env VAR, or run this on "
                              f"a terminal to be asked for it")
    return getpass.getpass(f"Password of the server account {user!r}: ")


# -- reporting -----------------------------------------------------------------------------


def _report_config_error(error: ConfigError, fmt: str) -> int:
    """A config that does not load: its lines on stderr (JSON log lines in JSON mode); exit 2."""
    if fmt == "json":
        logger = _error_logger()
        for line in error.problems:
            log_event(logger, "error", line)
    else:
        print(error, file=sys.stderr)
    return EXIT_CONFIG_ERROR


def _report_check(config: Config, *, binds: bool) -> int:
    """--check-config: the config loaded; now this machine (binds, backend host). Exit 0 or 2."""
    from mysqlpool_proxy.startup import check

    problems, warnings = check(config, binds=binds)
    json_mode = config.log.format == "json"
    logger = _error_logger() if json_mode else None
    for warning in config.warnings:
        _say(logger, "warning", f"warning: {warning}")
    for problem in warnings + problems:
        _say(logger, "warning" if problem in warnings else "error", problem.line, **problem.fields())
    if problems:
        return EXIT_CONFIG_ERROR
    if json_mode:
        print(json.dumps({"msg": "config OK", "config": config.source}))
    else:
        print(f"config OK: {config.source}")
    return 0


def _say(logger: logging.Logger | None, level: str, line: str, **fields: Any) -> None:
    if logger is None:
        print(line, file=sys.stderr)
    else:
        log_event(logger, level, line, **fields)


def _error_logger() -> logging.Logger:
    setup_logging("info", "json")
    return logging.getLogger("mysqlpool.config")


def _with_log_overrides(config: Config, args: argparse.Namespace) -> Config:
    """The command line's --log-level / --log-format win over [log]."""
    log = dataclasses.replace(config.log, level=args.log_level or config.log.level,
                              format=args.log_format or config.log.format)
    return dataclasses.replace(config, log=log)


def _log_config(config: Config) -> None:
    logger = logging.getLogger("mysqlpool.config")
    log_event(logger, "info", "config loaded", source=config.source, users=len(config.users))
    for warning in config.warnings:
        log_event(logger, "warning", warning, source=config.source)
    _log_environment_settings(logger, config)


def _log_environment_settings(logger: logging.Logger, config: Config) -> None:
    """One line naming the settings the environment gave, and which of them override the file."""
    from_env = {key: origin for key, origin in sorted(config.origins.items()) if origin.kind == ENV}
    if not from_env:
        return
    parts, overriding = [], []
    for key, origin in from_env.items():
        shown = config.describe(key, config.value(key)).split(" (", 1)[0]
        if origin.replaced is not None:
            overriding.append(key)
            parts.append(f"{shown} ({origin.name}, instead of {origin.replaced} in the file)")
        else:
            parts.append(f"{shown} ({origin.name})")
    count = f"{len(from_env)} setting{'s' if len(from_env) > 1 else ''} from the environment"
    head = f"{count}, {len(overriding)} overriding {config.source}: " if overriding else f"{count}: "
    # A list of objects, not {key: variable}: the log's secret masking would hide "users[0].password"'s variable.
    log_event(logger, "warning" if overriding else "info", head + ", ".join(parts),
              from_env=[{"key": key, "env": origin.name} for key, origin in from_env.items()],
              overriding=overriding)

