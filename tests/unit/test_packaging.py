# Packaging and installing: the metadata in pyproject.toml, LICENSE and
# CHANGELOG.md, the build's requirements and its list of compiled modules
# (setup.py), and the systemd unit with the README's steps for it. The wheels
# themselves are built in tests/integration/test_wheel.py.
from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from mysqlpool_proxy import __version__, cli
from mysqlpool_proxy.config import DEFAULT_CONFIG_PATH, ProxyConfig

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
UNIT = ROOT / "deploy" / "systemd" / "mysqlpool-proxy.service"
README = (ROOT / "README.md").read_text()


# -- metadata -----------------------------------------------------------------------------------

def test_license_is_an_spdx_expression_with_the_mit_text_beside_it():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The mysqlpool-proxy authors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]  # superseded by the expression


def test_metadata_is_complete():
    assert PROJECT["readme"] == "README.md" and PROJECT["requires-python"] == ">=3.11"
    assert {"Homepage", "Documentation", "Changelog"} <= set(PROJECT["urls"])
    assert "Programming Language :: Python :: 3.11" in PROJECT["classifiers"]
    assert PROJECT["scripts"] == {"mysqlpool-proxy": "mysqlpool_proxy.cli:main"}
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-data"]["mysqlpool_proxy"] == [cli.EXAMPLE_CONFIG]


def test_the_example_config_at_the_top_is_the_packaged_one():
    top = ROOT / "config.example.toml"
    assert top.read_text() == (ROOT / "mysqlpool_proxy" / cli.EXAMPLE_CONFIG).read_text() == cli.example_config()


def test_changelog_keeps_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "keepachangelog.com" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert headings[0] == ("Unreleased", "")
    assert (__version__, "2026-11-21") in headings
    unreleased = text.split("\n## [", 2)[1]
    assert re.findall(r"^### (\w+)$", unreleased, re.M) == ["Fixed", "Added", "Changed"]
    for name, _ in headings:
        assert re.search(rf"^\[{re.escape(name)}\]: \S+$", text, re.M), name  # every heading has its link


# -- systemd --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(UNIT)
    return parser


def test_the_unit_runs_the_cli_with_the_default_config(unit):
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0] == "/opt/mysqlpool-proxy/bin/mysqlpool-proxy"
    assert cli.build_parser().parse_args(argv[1:]).config == DEFAULT_CONFIG_PATH
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads


def test_the_unit_stops_by_draining_and_does_not_restart_a_bad_config(unit):
    service = unit["Service"]
    assert (service["KillSignal"], service["KillMode"]) == ("SIGTERM", "mixed")  # workers get it from the proxy
    assert float(service["TimeoutStopSec"]) > ProxyConfig().shutdown_timeout
    assert service["RestartPreventExitStatus"] == str(cli.EXIT_CONFIG_ERROR)


def test_the_unit_is_hardened(unit):
    service = unit["Service"]
    for key, value in {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                       "MemoryDenyWriteExecute": "yes"}.items():
        assert service[key] == value, key


def test_the_readmes_service_steps_point_the_config_at_the_units_credential(unit, tmp_path):
    name, _, source = unit["Service"]["LoadCredential"].partition(":")
    credential = f"/run/credentials/{UNIT.name}/{name}"
    block = README[README.index("### Running it as a service"):]
    block = block[block.index("```sh\n") + 6:block.index("```", block.index("```sh\n") + 6)]
    assert f"cat > {source}'" in block and f"deploy/systemd/{UNIT.name}" in block
    pipeline = " ".join(line.rstrip("\\") for line in block.splitlines()[3:6])  # print | sed | tee
    sed = re.search(r"\|\s+(sed '[^']+')\s+\|", pipeline)[1]
    rewritten = subprocess.run(["sh", "-c", sed], input=cli.example_config(), capture_output=True, text=True,
                               check=True, timeout=30).stdout
    users = tomllib.loads(rewritten)["users"]
    assert users == [{"name": "app", "password_file": credential}]
