# The README is the front door: it must document every config key the code
# accepts, and the test command CI runs must be the one it tells people to use.
import re
from dataclasses import fields
from pathlib import Path

from mysqlpool_proxy import config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def schema_keys():
    sections = {
        "proxy": config.ProxyConfig, "backend": config.BackendConfig, "pool": config.PoolConfig,
        "users[]": config.UserConfig, "admin": config.AdminConfig, "metrics": config.MetricsConfig,
        "log": config.LogConfig,
    }
    for section, cls in sections.items():
        for f in fields(cls):
            yield section, f.name


def test_every_config_key_is_documented():
    missing = []
    for section, key in schema_keys():
        # Documented as `section.key`, or in a row like `section.a`, `section.b` / `key`.
        rows = re.findall(rf"^\|([^|\n]*`{re.escape(section)}\.[^|\n]*)\|", README, re.M)
        if not any(re.search(rf"(`{re.escape(section)}\.{key}`|`{key}`)", r) for r in rows):
            missing.append(f"{section}.{key}")
    assert missing == []


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in README
    assert "scripts/test.sh" in ci


def test_the_compatibility_table_says_what_is_offered():
    """Each capability row of README's Protocol compatibility table says `yes...` exactly when the proxy
    offers it to clients (CLIENT_SSL: when TLS is configured)."""
    from mysqlpool_proxy import constants
    from mysqlpool_proxy.proxy.proxy import OFFERED_CAPABILITIES

    section = README.split("## Protocol compatibility", 1)[1].split("\n## ", 1)[0].split("| Command |", 1)[0]
    rows = re.findall(r"^\| (`[^|]*`) \| ([^|]*) \|", section, re.M)
    checked = {}
    for names, offered in rows:
        for name in re.findall(r"`([A-Z_0-9]+)`", names):
            flag = name.removeprefix("CLIENT_")
            value = getattr(constants.CLIENT, flag, None) or getattr(constants, name, None) \
                or getattr(constants, f"CLIENT_{flag}", None)
            if value is None:
                continue  # MariaDB's extended capabilities (the fourth byte's): never sent at all
            checked[name] = (offered.startswith(("yes", "when")),
                             bool(value & (OFFERED_CAPABILITIES | constants.CLIENT.SSL)))
    assert len(checked) >= 20, sorted(checked)
    assert {n: said for n, (said, real) in checked.items() if said != real} == {}
