# Command line entry point (`mysqlpool-proxy`, `python -m mysqlpool_proxy`).
#
# What this module owns: the command line options, choosing the config file,
# turning a ConfigError into exit status 2, and setting up logging before the
# server starts. The server itself is mysqlpool_proxy.app.run(config) -> int.
"""The mysqlpool-proxy command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from mysqlpool_proxy import __version__
from mysqlpool_proxy.config import (
    DEFAULT_CONFIG_PATH, ENV_CONFIG_PATH, Config, ConfigError, load_config,
)
from mysqlpool_proxy.logs import FORMATS, LEVELS, log_event, setup_logging

EXIT_CONFIG_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mysqlpool-proxy",
        description="MySQL connection-pooling proxy.",
        epilog=f"Without -c, the config is ${ENV_CONFIG_PATH} if set, else {DEFAULT_CONFIG_PATH} "
               "if it exists, else the MYSQLPOOL_* environment variables alone.",
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML config file")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration, print the result and exit (0 = OK, 2 = error)")
    parser.add_argument("--version", action="version", version=f"mysqlpool-proxy {__version__}")
    parser.add_argument("--log-format", choices=FORMATS, help="override [log] format")
    parser.add_argument("--log-level", choices=LEVELS, type=str.lower, help="override [log] level")
    return parser


def default_config_path(environ: Mapping[str, str],
                        fallback: str = DEFAULT_CONFIG_PATH) -> str | None:
    """$MYSQLPOOL_CONFIG, else `fallback` if it exists, else None (environment only)."""
    if environ.get(ENV_CONFIG_PATH):
        return environ[ENV_CONFIG_PATH]
    return fallback if os.path.exists(fallback) else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.config or default_config_path(os.environ)
    try:
        config = load_config(path, os.environ)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.check_config:
        return _report_check(config)
    config = _with_log_overrides(config, args)
    setup_logging(config.log.level, config.log.format)
    _log_config(config)
    from mysqlpool_proxy.app import run

    return run(config)


def _report_check(config: Config) -> int:
    print(f"config OK: {config.source}")
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


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
