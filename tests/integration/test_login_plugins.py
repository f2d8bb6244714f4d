# Real clients logging in to the proxy with each login plugin (protocol/handshake.py):
#   * mysql-connector-python (pure Python: its C extension does not load here):
#     caching_sha2_password full authentication over TLS, sha256_password and
#     mysql_clear_password over TLS. Over plain TCP its caching_sha2 plugin answers
#     full authentication with the password in clear (it has no RSA): the proxy
#     refuses that (1045), as a MySQL server does.
#   * PyMySQL: full authentication with the key fetched or given in advance
#     (server_public_key), over TLS and on the Unix socket; sha256_password;
#     client_ed25519 by switch (PyNaCl).
#   * the `mariadb` command-line client: client_ed25519 with
#     --default-auth=client_ed25519, beside the same login to MariaDB itself
#     (an account IDENTIFIED VIA ed25519): both get in, and a wrong password gets the
#     same 1045 from both.
# Each user maps to the test server's `app` account; the proxy checks the client's
# password, then serves it from the app pool.
from __future__ import annotations

import hashlib
import os
import subprocess

import mysql.connector
import pymysql
import pytest

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

WAIT = 10
PW = "plugin-secret"
PW_HASH = "*" + hashlib.sha1(hashlib.sha1(PW.encode()).digest()).hexdigest().upper()
ROUTE = {"backend_user": APP_USER, "backend_password": APP_PASSWORD}
USERS = [
    {"name": "sha2", "password": PW, "auth_plugins": ["caching_sha2_password"], **ROUTE},
    # known by its hash only: no fast path, every caching_sha2 login is a full authentication
    {"name": "sha2hash", "password_hash": PW_HASH, "auth_plugins": ["caching_sha2_password"], **ROUTE},
    {"name": "sha256", "password": PW, "auth_plugins": ["sha256_password"], **ROUTE},
    {"name": "ed", "password": PW, "auth_plugins": ["client_ed25519"], **ROUTE},
    {"name": "clear", "password": PW, "auth_plugins": ["mysql_clear_password", "mysql_native_password"], **ROUTE},
    {"name": "clearonly", "password": PW, "auth_plugins": ["mysql_clear_password"], **ROUTE},
    {"name": "any", "password": PW, **ROUTE},
]
CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}


@pytest.fixture
def plugin_proxy(proxy_factory, tls_files):
    return proxy_factory(users=USERS, proxy={"tls_cert": tls_files.cert, "tls_key": tls_files.key})


@pytest.fixture
def unix_proxy(proxy_factory, tmp_path):
    path = tmp_path / "proxy.sock"
    proxy = proxy_factory(users=USERS, proxy={"listen": f"unix:{path}"})
    proxy.socket_path = str(path)
    return proxy


def select_user(conn) -> str:
    cur = conn.cursor()
    cur.execute("SELECT CURRENT_USER()")
    (user,) = cur.fetchone()
    conn.close()
    return user.decode() if isinstance(user, bytes) else user


def connector(proxy, user: str, password: str = PW, **kw):
    kw.setdefault("ssl_disabled", True)
    return mysql.connector.connect(host=proxy.host, port=proxy.port, user=user, password=password,
                                   database=APP_DB, connection_timeout=WAIT, **kw)


# -- mysql-connector-python, pure Python -------------------------------------------------------


@pytest.mark.parametrize("user", ["sha2hash", "sha2"])  # full authentication; the fast path
def test_connector_pure_caching_sha2_over_tls(plugin_proxy, tls_files, user):
    conn = connector(plugin_proxy, user, use_pure=True, ssl_disabled=False, ssl_ca=tls_files.cert,
                     auth_plugin="caching_sha2_password")
    assert select_user(conn).startswith(f"{APP_USER}@")


def test_connector_pure_full_auth_over_plain_tcp_is_refused(plugin_proxy):
    """Connector/Python's pure plugin answers full authentication with the password in clear even
    without TLS: refused, as MySQL refuses it (the password is not taken)."""
    with pytest.raises(mysql.connector.Error) as info:
        connector(plugin_proxy, "sha2hash", use_pure=True, auth_plugin="caching_sha2_password")
    assert info.value.errno == 1045
    # the fast path needs no password exchange: fine over plain TCP
    assert select_user(connector(plugin_proxy, "sha2", use_pure=True, auth_plugin="caching_sha2_password"))


def test_connector_clear_password_over_tls(plugin_proxy, tls_files):
    conn = connector(plugin_proxy, "clear", use_pure=True, ssl_disabled=False, ssl_ca=tls_files.cert,
                     auth_plugin="mysql_clear_password")
    assert select_user(conn).startswith(f"{APP_USER}@")


@pytest.mark.parametrize("user", ["sha256", "any"])
def test_connector_sha256_over_tls(plugin_proxy, tls_files, user):
    conn = connector(plugin_proxy, user, use_pure=True, ssl_disabled=False, ssl_ca=tls_files.cert,
                     auth_plugin="sha256_password")
    assert select_user(conn).startswith(f"{APP_USER}@")


# -- PyMySQL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["sha2", "sha2hash"])  # PyMySQL opens with native: switched, full auth
def test_pymysql_full_auth_fetching_the_key(plugin_proxy, user):
    assert select_user(plugin_proxy.connect(user, PW, ssl_disabled=True))


def test_pymysql_full_auth_with_the_key_given(plugin_proxy):
    key = plugin_proxy.proxy.rsa_keys.public_pem
    assert select_user(plugin_proxy.connect("sha2", PW, ssl_disabled=True, server_public_key=key))


def test_pymysql_full_auth_over_tls(plugin_proxy, tls_files):
    assert select_user(plugin_proxy.connect("sha2", PW, ssl_ca=tls_files.cert))


def test_pymysql_full_auth_on_the_unix_socket(unix_proxy):
    conn = pymysql.connect(unix_socket=unix_proxy.socket_path, user="sha2", password=PW, database=APP_DB,
                           connect_timeout=WAIT)
    assert select_user(conn)


def test_pymysql_sha256_and_ed25519(plugin_proxy):
    assert select_user(plugin_proxy.connect("sha256", PW, ssl_disabled=True))
    assert select_user(plugin_proxy.connect("ed", PW, ssl_disabled=True))


@pytest.mark.parametrize("user", ["sha2", "sha2hash", "sha256", "ed", "any"])
def test_pymysql_wrong_password(plugin_proxy, user):
    with pytest.raises(pymysql.err.OperationalError) as info:
        plugin_proxy.connect(user, "wrong", ssl_disabled=True)
    assert info.value.args == (1045, f"Access denied for user '{user}'@'127.0.0.1' (using password: YES)")


def test_clear_password_only_user_cannot_log_in_over_plain_tcp(plugin_proxy, tls_files):
    """Never asked for in clear without TLS: refused with 1045. "clear" falls back to native there."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        plugin_proxy.connect("clearonly", PW, ssl_disabled=True)
    assert info.value.args == (1045, "Access denied for user 'clearonly'@'127.0.0.1' (using password: YES)")
    assert select_user(plugin_proxy.connect("clear", PW, ssl_disabled=True))
    assert select_user(plugin_proxy.connect("clearonly", PW, ssl_ca=tls_files.cert))  # switched to it over TLS


# -- the mariadb client, beside MariaDB ---------------------------------------------------------------


def mariadb_login(cli: str, host: str, port: int, user: str, password: str, *extra: str):
    return subprocess.run(
        [cli, "--no-defaults", "--protocol=tcp", f"--host={host}", f"--port={port}", f"--user={user}",
         f"--password={password}", "--skip-ssl", *extra, "-N", "-e", "SELECT 1"],
        capture_output=True, text=True, timeout=60, env=CLIENT_ENV, check=False)


@pytest.fixture
def ed25519_account(app_server):
    """An account IDENTIFIED VIA ed25519 on MariaDB itself, for comparison."""
    if not app_server.execute("SELECT 1 FROM information_schema.plugins WHERE plugin_name = 'ed25519'"):
        app_server.execute("INSTALL SONAME 'auth_ed25519'")
    app_server.execute("CREATE OR REPLACE USER 'ed'@'%%' IDENTIFIED VIA ed25519 USING PASSWORD(%s)", (PW,))
    yield "ed"
    app_server.execute("DROP USER IF EXISTS 'ed'@'%'")


@pytest.mark.parametrize("default_auth", [["--default-auth=client_ed25519"], []], ids=["default-auth", "switch"])
def test_mariadb_cli_ed25519_as_with_mariadb(plugin_proxy, app_server, mariadb_cli, ed25519_account, default_auth):
    direct = mariadb_login(mariadb_cli, app_server.host, app_server.port, "ed", PW, *default_auth)
    proxied = mariadb_login(mariadb_cli, plugin_proxy.host, plugin_proxy.port, "ed", PW, *default_auth)
    assert (direct.returncode, direct.stdout.strip()) == (0, "1"), direct.stderr
    assert (proxied.returncode, proxied.stdout.strip()) == (0, "1"), proxied.stderr
    direct = mariadb_login(mariadb_cli, app_server.host, app_server.port, "ed", "wrong", *default_auth)
    proxied = mariadb_login(mariadb_cli, plugin_proxy.host, plugin_proxy.port, "ed", "wrong", *default_auth)
    assert direct.returncode == proxied.returncode == 1
    assert "ERROR 1045 (28000): Access denied for user 'ed'@" in direct.stderr
    assert proxied.stderr == direct.stderr.replace(app_server.host, "127.0.0.1")


def test_mariadb_cli_clear_password(plugin_proxy, mariadb_cli, tls_files):
    """Over plain TCP the client is switched to mysql_native_password, as MariaDB switches it to the
    account's plugin; over TLS its clear password is taken."""
    args = ["--default-auth=mysql_clear_password"]
    plain = mariadb_login(mariadb_cli, plugin_proxy.host, plugin_proxy.port, "clear", PW, *args)
    assert (plain.returncode, plain.stdout.strip()) == (0, "1"), plain.stderr
    tls = mariadb_login(mariadb_cli, plugin_proxy.host, plugin_proxy.port, "clear", PW, *args,
                        "--ssl", f"--ssl-ca={tls_files.cert}")
    assert (tls.returncode, tls.stdout.strip()) == (0, "1"), tls.stderr


def test_configured_key_pair_is_the_one_clients_get(proxy_factory, tmp_path, caplog):
    """proxy.rsa_private_key / rsa_public_key: a client given the public key file in advance logs in; the
    private key is never logged."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "private_key.pem", tmp_path / "public_key.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    with caplog.at_level("DEBUG"):
        proxy = proxy_factory(users=USERS, proxy={"rsa_private_key": str(private), "rsa_public_key": str(public)})
        conn = proxy.connect("sha2hash", PW, ssl_disabled=True, server_public_key=public.read_bytes())
        assert select_user(conn)
    assert proxy.proxy.rsa_keys.public_pem == public.read_bytes()
    assert "PRIVATE KEY" not in caplog.text and "RSA public key for password exchanges" in caplog.text
