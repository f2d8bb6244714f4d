# A throwaway TLS certificate for tests: `self_signed(folder)` runs `openssl req`
# once and returns TlsFiles(cert, key), a P-256 certificate for CN=localhost
# with localhost and 127.0.0.1 as subject alternative names, valid two days. It
# serves as its own CA, so clients verify the proxy with `ca = cert`.
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT = 60.0  # seconds


@dataclass(frozen=True)
class TlsFiles:
    cert: str  # also the CA to verify it with
    key: str


def self_signed(folder: Path) -> TlsFiles:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make a test certificate (apt-get install openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=OPENSSL_TIMEOUT)
    return TlsFiles(str(cert), str(key))
