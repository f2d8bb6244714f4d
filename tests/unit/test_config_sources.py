"""Where settings come from (Config.origins), the command line's settings, and the TLS files a config
names: loaded at check time, so one the proxy could not use is a config error that names its key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mysqlpool_proxy.config import (
    CLI,
    DEFAULT,
    ENV,
    FILE,
    ConfigError,
    Origin,
    Override,
    load_config,
    peek_log_format,
)

USER = '[[users]]\nname = "app"\npassword = "pw"\n'


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def error_of(path: str, environ: dict[str, str] | None = None, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {}, overrides)
    return str(info.value)


# -- provenance ----------------------------------------------------------------------------

def test_each_setting_says_where_it_came_from(tmp_path):
    path = write(tmp_path, '[proxy]\nlisten = "127.0.0.1:7000"\n[pool]\nmax_size = 4\n' + USER)
    cfg = load_config(path, {"MYSQLPOOL_PROXY_LISTEN": "0.0.0.0:6033", "MYSQLPOOL_POOL_MIN_IDLE": "1"})
    assert cfg.origin("proxy.listen") == Origin(ENV, "MYSQLPOOL_PROXY_LISTEN", replaced="'127.0.0.1:7000'")
    assert cfg.origin("pool.min_idle") == Origin(ENV, "MYSQLPOOL_POOL_MIN_IDLE")  # the file does not set it
    assert cfg.origin("pool.max_size") == Origin(FILE, path)
    assert cfg.origin("users[0].name") == Origin(FILE, path)
    assert cfg.origin("pool.checkout_timeout") == Origin(DEFAULT)
    assert cfg.origin("users[0].backend_user") == Origin(DEFAULT)  # derived from name
    assert cfg.proxy.listen == "0.0.0.0:6033"


def test_a_secret_is_named_by_its_base_key_and_never_shown(tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file\n")
    path = write(tmp_path, '[[users]]\nname = "app"\npassword_env = "APP_PW"\n'
                           '[[users]]\nname = "b"\npassword = "in-the-file"\n')
    cfg = load_config(path, {"APP_PW": "x", "MYSQLPOOL_USERS_1_PASSWORD_FILE": str(secret_file)})
    assert cfg.origin("users[0].password") == Origin(FILE, path)  # the file says where to read it
    assert cfg.origin("users[1].password") == Origin(ENV, "MYSQLPOOL_USERS_1_PASSWORD_FILE", replaced="***")
    assert cfg.users[1].password == "from-a-file"
    assert cfg.describe("users[1].password", cfg.users[1].password) == (
        f"users[1].password = *** (set by the environment variable MYSQLPOOL_USERS_1_PASSWORD_FILE, "
        f"instead of *** in {path})")


def test_users_the_environment_adds_have_env_origins(tmp_path):
    cfg = load_config(write(tmp_path, USER), {"MYSQLPOOL_USERS_1_NAME": "b", "MYSQLPOOL_USERS_1_PASSWORD": "x"})
    assert cfg.origin("users[1].name") == Origin(ENV, "MYSQLPOOL_USERS_1_NAME")


def test_describe_names_the_file_the_variable_or_the_default(tmp_path):
    path = write(tmp_path, '[pool]\nmax_size = 4\n' + USER)
    cfg = load_config(path, {"MYSQLPOOL_POOL_MIN_IDLE": "1"})
    assert cfg.describe("pool.max_size", 4) == f"pool.max_size = 4 (set in {path})"
    assert cfg.describe("pool.min_idle", 1) == "pool.min_idle = 1 (set by the environment variable " \
                                               "MYSQLPOOL_POOL_MIN_IDLE)"
    assert cfg.describe("metrics.listen", "x") == f"metrics.listen = 'x' (the default: not set in {path})"
    env_only = load_config(None, {"MYSQLPOOL_USERS_0_NAME": "a", "MYSQLPOOL_USERS_0_PASSWORD": "b"})
    assert env_only.describe("metrics.listen", "x") == "metrics.listen = 'x' (the default)"


def test_value_reads_any_setting(tmp_path):
    cfg = load_config(write(tmp_path, '[pool]\nmax_size = 4\n' + USER), {})
    assert (cfg.value("pool.max_size"), cfg.value("users[0].name"), cfg.value("log.level")) == (4, "app", "info")


# -- the command line's settings --------------------------------------------------------------

def test_overrides_win_over_the_file_and_the_environment(tmp_path):
    path = write(tmp_path, '[backend]\nhost = "db"\nport = 3307\n' + USER)
    overrides = [Override("backend.host", "127.0.0.1", "--backend"), Override("backend.port", "3306", "--backend")]
    cfg = load_config(path, {"MYSQLPOOL_BACKEND_PORT": "3308"}, overrides)
    assert (cfg.backend.host, cfg.backend.port) == ("127.0.0.1", 3306)
    assert cfg.origin("backend.port") == Origin(CLI, "--backend", replaced="3307")
    assert cfg.overrides == tuple(overrides)  # kept, so that a reload applies them again


def test_overrides_alone_make_a_config():
    cfg = load_config(None, {"APP_PW": "secret"}, [
        Override("users[0].name", "app", "--user"), Override("users[0].password_env", "APP_PW", "--password-env")])
    assert [(u.name, u.password) for u in cfg.users] == [("app", "secret")]
    assert cfg.origin("users[0].password") == Origin(CLI, "--password-env")


def test_an_override_replaces_the_environments_form_of_a_secret():
    environ = {"MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD_FILE": "/nonexistent"}
    cfg = load_config(None, environ, [Override("users[0].password", "typed", "the password prompt")])
    assert cfg.users[0].password == "typed"
    assert cfg.origin("users[0].password") == Origin(CLI, "the password prompt")


def test_a_bad_override_value_names_the_option():
    message = error_of(None, {}, [Override("users[0].name", "app", "--user"),
                                  Override("users[0].password_env", "NOPE", "--password-env"),
                                  Override("backend.port", "99999", "--backend")])
    assert "backend.port must be an integer from 1 to 65535, got '99999' (from --backend)" in message
    assert "users[0].password_env: environment variable NOPE is not set (from --password-env)" in message


@pytest.mark.parametrize("key", ["nosuch.key", "pool.nosuch", "users.name", "pool[0].max_size", "users[01].name"])
def test_an_override_of_no_setting_is_a_programming_error(key):
    with pytest.raises(ValueError, match="no setting"):
        load_config(None, {}, [Override(key, "1", "--x")])


# -- TLS files ----------------------------------------------------------------------------

@pytest.fixture
def pki(tmp_path, tls_files):
    """cert.pem and key.pem (a pair), other.key (another key), junk.pem, enc.key (encrypted)."""
    shutil.copy(tls_files.cert, tmp_path / "cert.pem")
    shutil.copy(tls_files.key, tmp_path / "key.pem")
    (tmp_path / "junk.pem").write_text("not PEM at all\n")
    run = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run([*run, "-out", str(tmp_path / "other.key")], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "key.pem"), "-aes256", "-passout", "pass:x",
                    "-out", str(tmp_path / "enc.key")], check=True, capture_output=True, timeout=60)
    return tmp_path


PROXY_TLS = '[proxy]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
BACKEND_TLS = '[backend]\nssl_mode = "{mode}"\nssl_ca = "{ca}"\nssl_cert = "{cert}"\nssl_key = "{key}"\n'


def test_a_certificate_and_its_key_load(pki):
    cfg = load_config(write(pki, PROXY_TLS.format(cert="cert.pem", key="key.pem") + BACKEND_TLS.format(
        mode="verify_ca", ca="cert.pem", cert="cert.pem", key="key.pem") + USER), {})
    assert cfg.proxy.tls_key == str(pki / "key.pem")


@pytest.mark.parametrize("cert, key, message", [
    ("junk.pem", "key.pem", "proxy.tls_cert = '{d}/junk.pem' (set in {path}): not a PEM certificate "
                            "(no certificate or crl found); give a file that holds one"),
    ("cert.pem", "junk.pem", "proxy.tls_key = '{d}/junk.pem' (set in {path}): not a PEM private key"),
    ("cert.pem", "other.key", "proxy.tls_key = '{d}/other.key' (set in {path}): this key does not belong to "
                              "the certificate in proxy.tls_cert ('{d}/cert.pem'); give the key the "
                              "certificate was made for"),
    ("cert.pem", "enc.key", "proxy.tls_key = '{d}/enc.key' (set in {path}): the key is encrypted with a "
                            "passphrase, which the proxy cannot ask for"),
])
def test_a_tls_file_the_proxy_cannot_use_is_named(pki, cert, key, message):
    path = write(pki, PROXY_TLS.format(cert=cert, key=key) + USER)
    assert f"config error in {path}: " + message.format(d=pki, path=path) in error_of(path)


def test_backend_tls_files_are_loaded_unless_tls_is_off(pki):
    files = {"ca": "junk.pem", "cert": "cert.pem", "key": "other.key"}
    path = write(pki, BACKEND_TLS.format(mode="required", **files) + USER)
    message = error_of(path)
    assert f"backend.ssl_ca = '{pki}/junk.pem' (set in {path}): not a PEM CA certificate" in message
    assert f"backend.ssl_key = '{pki}/other.key' (set in {path}): this key does not belong" in message
    cfg = load_config(write(pki, BACKEND_TLS.format(mode="disabled", **files) + USER), {})
    assert any("not used" in w for w in cfg.warnings)  # not loaded: only a warning that they are unused


def test_a_tls_file_from_the_environment_names_the_variable(pki):
    path = write(pki, PROXY_TLS.format(cert="cert.pem", key="key.pem") + USER)
    message = error_of(path, {"MYSQLPOOL_PROXY_TLS_KEY": str(pki / "other.key")})
    assert (f"proxy.tls_key = '{pki}/other.key' (set by the environment variable MYSQLPOOL_PROXY_TLS_KEY, "
            f"instead of 'key.pem' in {path}): this key does not belong") in message


# -- the log format of a config that may not load ---------------------------------------------

def test_peek_log_format(tmp_path):
    path = write(tmp_path, '[log]\nformat = "JSON"\n[pool]\nmax_size = "bad"\n')
    assert peek_log_format(path, {}) == "json"
    assert peek_log_format(path, {"MYSQLPOOL_LOG_FORMAT": "text"}) == "text"
    assert peek_log_format(None, {"MYSQLPOOL_LOG_FORMAT": "json"}) == "json"
    assert peek_log_format(write(tmp_path, "not [toml"), {}) == "text"
    assert peek_log_format(str(tmp_path / "missing.toml"), {}) == "text"
    assert peek_log_format(write(tmp_path, '[log]\nformat = "xml"\n'), {}) == "text"
