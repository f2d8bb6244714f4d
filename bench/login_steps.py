# Proxy instructions per step of a connect-per-request, counted like
# bench/instructions.py (the proxy CLI under callgrind, a private mariadbd).
#
# A raw client (a few lines of the protocol, no driver) makes N connections
# that each go as far as step k and then close, for k = 1..5:
#   1  connect, read the greeting, close
#   2  + log in (mysql_native_password, with a database and connect attributes, as PyMySQL does)
#   3  + SET NAMES utf8mb4 (the proxy answers it)
#   4  + a point select (relayed)
#   5  + COM_QUIT
# The instructions per connection at k minus those at k - 1 are what step k
# costs. The proxy's own timers (health checks, the janitor) add a few
# thousand per connection, the same at every k.
#
#   python -m bench.login_steps                  # 100 connections per step, a few minutes
#   python -m bench.login_steps --connections 200 --port 49000
"""Proxy instructions per step of a connect-per-request (callgrind)."""

from __future__ import annotations

import argparse
import shutil
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from pymysql import _auth
from pymysql.constants import CLIENT

from bench.instructions import Callgrind, prepare_table, start_proxy
from bench.procs import BENCH_DB, BENCH_PASSWORD, BENCH_USER, start_server

CAPABILITIES = (CLIENT.LONG_PASSWORD | CLIENT.LONG_FLAG | CLIENT.PROTOCOL_41 | CLIENT.TRANSACTIONS
                | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_RESULTS | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_WITH_DB
                | CLIENT.CONNECT_ATTRS)
ATTRIBUTES = {b"_client_name": b"pymysql", b"_pid": b"1234", b"_client_version": b"1.1.1", b"program_name": b"bench"}
STEPS = {1: "greeting, close", 2: "log in", 3: "SET NAMES", 4: "point select", 5: "COM_QUIT"}


def read_packet(sock: socket.socket) -> bytes:
    header = _read(sock, 4)
    return _read(sock, header[0] | header[1] << 8 | header[2] << 16)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the proxy closed the connection")
        data += chunk
    return data


def send_packet(sock: socket.socket, seq: int, payload: bytes) -> None:
    sock.sendall(struct.pack("<I", len(payload))[:3] + bytes((seq,)) + payload)


def read_response(sock: socket.socket) -> None:
    """An OK or ERR, or a result set (to its second EOF)."""
    if read_packet(sock)[0] in (0x00, 0xFF):
        return
    eofs = 0
    while eofs < 2:
        packet = read_packet(sock)
        eofs += packet[0] == 0xFE and len(packet) < 9


def handshake_response(greeting: bytes) -> bytes:
    """A HandshakeResponse41 to `greeting`, for the bench user, as a driver sends it."""
    pos = greeting.index(b"\0", 1) + 1 + 4  # protocol version, server version, connection id
    scramble = greeting[pos:pos + 8]
    pos += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10  # filler, capabilities, charset, status, capabilities, length, reserved
    scramble += greeting[pos:pos + 12]
    token = _auth.scramble_native_password(BENCH_PASSWORD.encode(), scramble)
    attributes = b"".join(bytes((len(k),)) + k + bytes((len(v),)) + v for k, v in ATTRIBUTES.items())
    return (struct.pack("<IIB", CAPABILITIES, 1 << 24, 45) + b"\0" * 23 + BENCH_USER.encode() + b"\0"
            + bytes((len(token),)) + token + BENCH_DB.encode() + b"\0" + b"mysql_native_password\0"
            + bytes((len(attributes),)) + attributes)


def connection(port: int, steps: int, i: int) -> None:
    """One connection, as far as step `steps`."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        greeting = read_packet(sock)
        if steps >= 2:
            send_packet(sock, 1, handshake_response(greeting))
            if read_packet(sock)[0] != 0x00:
                raise RuntimeError("the login was refused")
        if steps >= 3:
            send_packet(sock, 0, b"\x03SET NAMES utf8mb4")
            read_response(sock)
        if steps >= 4:
            send_packet(sock, 0, b"\x03SELECT c FROM sbtest1 WHERE id=%d" % (i % 1000 + 1))
            read_response(sock)
        if steps >= 5:
            send_packet(sock, 0, b"\x01")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--connections", type=int, default=100, help="connections per step")
    ap.add_argument("--port", type=int, default=49000, help="the proxy's listening port")
    opts = ap.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mysqlpool-login-steps-"))
    server = start_server({})
    proc = None
    try:
        prepare_table(server)
        proc, prefix = start_proxy(server.port, opts.port, workdir, 4)
        callgrind = Callgrind(proc.pid, prefix)
        previous = 0.0
        for steps, name in STEPS.items():
            for i in range(20):  # warm-up
                connection(opts.port, steps, i)
            time.sleep(0.5)
            callgrind.zero()
            for i in range(opts.connections):
                connection(opts.port, steps, i)
            time.sleep(1.0)  # the last closes handled
            total = callgrind.dump() / opts.connections
            print(f"{steps}  {name:<16} {total:>10,.0f} instructions per connection  "
                  f"(this step {total - previous:+,.0f})", flush=True)
            previous = total
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
