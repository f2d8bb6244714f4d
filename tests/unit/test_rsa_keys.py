# The proxy's RSA key pair (proxy/proxy.py shared_rsa_keys): made once per process and
# inherited by forked workers, so each worker hands clients the same public key; a
# Proxy uses that pair; configured files are what it loads.
from __future__ import annotations

import os

from mysqlpool_proxy.config import load_config
from mysqlpool_proxy.proxy.proxy import shared_rsa_keys


def config(tmp_path, extra: str = ""):
    path = tmp_path / "config.toml"
    path.write_text(f'[proxy]\n{extra}\n[[users]]\nname = "app"\npassword = "pw"\n')
    return load_config(str(path), {})


def test_forked_workers_share_the_generated_pair(tmp_path):
    cfg = config(tmp_path)
    keys = shared_rsa_keys(cfg)
    assert shared_rsa_keys(cfg) is keys
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker, as workers.supervise() forks it
        try:
            os.write(write, shared_rsa_keys(cfg).public_pem)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        child = fh.read()
    os.waitpid(pid, 0)
    assert child == keys.public_pem


def test_configured_files_are_loaded(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keys = shared_rsa_keys(config(tmp_path, f'rsa_private_key = "{private}"'))
    assert keys.public_pem == key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys is not shared_rsa_keys(config(tmp_path))
