# A raw MariaDB client for the tests of MariaDB's protocol extensions: it logs in asking for
# MariaDB's extended capabilities (CLIENT_MYSQL cleared, the wanted ones in the last 4 reserved
# bytes of its HandshakeResponse, as Connector/C, Connector/J and mysql2 do), and sends
# COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE and COM_STMT_BULK_EXECUTE, returning each answer
# as its raw packets, so a test compares them with a direct connection's byte for byte.
# Written from MariaDB's protocol pages, on the fuzzer's socket (tests/fuzz/wire.py): it does
# not import mysqlpool_proxy.
from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from pymysql.constants import CLIENT

from tests.fuzz.wire import RawConnection, auth_response, frame, is_eof, lenenc, lenenc_bytes

STMT_BULK_OPERATIONS = 1 << 34
EXTENDED_METADATA = 1 << 35
CACHE_METADATA = 1 << 36
MORE_RESULTS = 0x0008
SEND_TYPES = 128
BASE_FLAGS = (CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.TRANSACTIONS
              | CLIENT.MULTI_RESULTS | CLIENT.MULTI_STATEMENTS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB)
TIMEOUT = 10.0
LONGLONG, VAR_STRING = 0x08, 0xFD


@dataclass
class Greeting:
    capabilities: int  # MariaDB's extended ones as bits 32 and up (when CLIENT_MYSQL is clear)
    scramble: bytes
    plugin: bytes


def parse_greeting(p: bytes) -> Greeting:
    pos = p.index(b"\0", 1) + 1 + 4
    part1 = p[pos:pos + 8]
    pos += 9
    caps = int.from_bytes(p[pos:pos + 2], "little")
    caps |= int.from_bytes(p[pos + 5:pos + 7], "little") << 16
    auth_len = p[pos + 7]
    reserved = p[pos + 8:pos + 18]
    if not caps & CLIENT.LONG_PASSWORD:  # CLIENT_MYSQL clear: MariaDB's capabilities follow
        caps |= int.from_bytes(reserved[6:], "little") << 32
    pos += 18
    part2 = p[pos:pos + max(13, auth_len - 8)]
    plugin = p[pos + len(part2):].split(b"\0")[0]
    return Greeting(caps, part1 + part2.rstrip(b"\0")[:12], plugin)


class MariaDBClient:
    """One connection; `extended`: the MariaDB capabilities to ask for (those the server offers)."""

    def __init__(self, host: str, port: int, user: str, password: str, database: str, *, extended: int = 0,
                 flags: int = BASE_FLAGS):
        self.conn = RawConnection.open(host, port, TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        seq, packet = self.conn.recv_packet(deadline)
        self.greeting = parse_greeting(packet)
        offered = self.greeting.capabilities
        self.extended = extended & offered & ~0xFFFFFFFF
        self.capabilities = (flags & offered & 0xFFFFFFFF) | self.extended
        if not self.extended:
            self.capabilities |= CLIENT.LONG_PASSWORD
        plugin = b"mysql_native_password"
        token = auth_response(plugin, password, self.greeting.scramble)
        body = (struct.pack("<IIB", self.capabilities & 0xFFFFFFFF, 1 << 24, 45) + bytes(19)
                + struct.pack("<I", self.extended >> 32) + user.encode() + b"\0" + bytes((len(token),)) + token
                + database.encode() + b"\0" + plugin + b"\0")
        self.conn.send(frame(body, seq + 1))
        while True:
            seq, reply = self.conn.recv_packet(deadline)
            if reply[:1] == b"\xfe":  # an auth switch
                name, _, data = reply[1:].partition(b"\0")
                self.conn.send(frame(auth_response(name, password, data.rstrip(b"\0")), seq + 1))
                continue
            if reply[:1] != b"\x00":
                raise AssertionError(f"login failed: {reply!r}")
            return

    def close(self) -> None:
        self.conn.send(frame(b"\x01", 0))
        self.conn.close()

    def _packet(self) -> bytes:
        return self.conn.recv_packet(time.monotonic() + TIMEOUT)[1]

    def result(self, payload: bytes) -> list[bytes]:
        """Send a command answered with results (OK, ERR, result sets) and read all of it."""
        self.conn.send(frame(payload, 0))
        packets = []
        while True:
            p = self._packet()
            packets.append(p)
            if p[:1] == b"\xff":
                return packets
            if p[:1] == b"\x00":
                _, pos = lenenc(p, 1)
                _, pos = lenenc(p, pos)
                status = int.from_bytes(p[pos:pos + 2], "little")
            else:
                count, _ = lenenc(p, 0)
                packets += [self._packet() for _ in range((count or 0) + 1)]  # definitions, EOF
                while True:
                    p = self._packet()
                    packets.append(p)
                    if p[:1] == b"\xff":
                        return packets
                    if is_eof(p):
                        status = int.from_bytes(p[3:5], "little")
                        break
            if not status & MORE_RESULTS:
                return packets

    def query(self, sql: str) -> list[bytes]:
        return self.result(b"\x03" + sql.encode())

    def prepare(self, sql: str) -> tuple[int, list[bytes]]:
        """(statement id, the answer's packets)."""
        self.conn.send(frame(b"\x16" + sql.encode(), 0))
        first = self._packet()
        if first[:1] == b"\xff":
            return 0, [first]
        columns, params = struct.unpack_from("<HH", first, 5)
        packets = [first]
        for count in (params, columns):
            if count:
                packets += [self._packet() for _ in range(count + 1)]
        return struct.unpack_from("<I", first, 1)[0], packets

    def execute(self, stmt_id: int) -> list[bytes]:
        """COM_STMT_EXECUTE of a statement without parameters."""
        return self.result(b"\x17" + struct.pack("<IBI", stmt_id, 0, 1))

    def bulk(self, stmt_id: int, rows: list[tuple], *, types: bytes | None = None, flags: int = 0) -> list[bytes]:
        """COM_STMT_BULK_EXECUTE of `rows` (None: NULL; int: LONGLONG; str: a string), with `types` sent
        (SEND_TYPES_TO_SERVER) when given."""
        return self.result(bulk_packet(stmt_id, rows, types=types, flags=flags))


def bulk_packet(stmt_id: int, rows: list[tuple], *, types: bytes | None = None, flags: int = 0) -> bytes:
    if types is not None:
        flags |= SEND_TYPES
    body = [b"\xfa", struct.pack("<IH", stmt_id, flags), types or b""]
    for row in rows:
        for value in row:
            if value is None:
                body.append(b"\x01")
            elif isinstance(value, int):
                body.append(b"\x00" + struct.pack("<q", value))
            else:
                body.append(b"\x00" + lenenc_bytes(value.encode()))
    return b"".join(body)


def types_of(*kinds: int) -> bytes:
    return b"".join(bytes((kind, 0)) for kind in kinds)
