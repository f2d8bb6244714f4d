"""Primitive MySQL wire types: fixed-width ints, length-encoded ints and strings.

`Reader` is a bounded cursor over one packet payload. Every read checks the
remaining length first and raises RemoteProtocolError on short data, so a
truncated or hostile packet can never loop, over-read or raise IndexError.
The `lenenc_*`/`int*` writers return bytes for building packets.
"""

from __future__ import annotations

import struct

from ..errors import RemoteProtocolError

__all__ = ["BytesLike", "Reader", "int1", "int2", "int3", "int4", "int8", "lenenc_int", "lenenc_bytes", "NULL_LENGTH"]

# What a payload may arrive as: a packet's bytes, a decoder's buffer, or a view into either.
BytesLike = bytes | bytearray | memoryview

# A length-encoded integer whose first byte is 0xFB means SQL NULL (in rows).
NULL_LENGTH = None

_I2 = struct.Struct("<H")
_I4 = struct.Struct("<I")
_I8 = struct.Struct("<Q")


class Reader:
    """Reads wire types from one payload, left to right."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: BytesLike, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def _take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.end:
            raise RemoteProtocolError(f"packet too short: need {n} bytes at offset {start}, have {self.end - start}")
        self.pos = start + n
        return start

    def int1(self) -> int:
        start = self._take(1)
        return self.data[start]

    def int2(self) -> int:
        start = self._take(2)
        value: int = _I2.unpack_from(self.data, start)[0]
        return value

    def int3(self) -> int:
        start = self._take(3)
        d = self.data
        return d[start] | d[start + 1] << 8 | d[start + 2] << 16

    def int4(self) -> int:
        start = self._take(4)
        value: int = _I4.unpack_from(self.data, start)[0]
        return value

    def int8(self) -> int:
        start = self._take(8)
        value: int = _I8.unpack_from(self.data, start)[0]
        return value

    def lenenc_int(self) -> int | None:
        """A length-encoded integer; None for the NULL marker 0xFB."""
        first = self.int1()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.int2()
        if first == 0xFD:
            return self.int3()
        if first == 0xFE:
            return self.int8()
        if first == 0xFB:
            return NULL_LENGTH
        raise RemoteProtocolError("invalid length-encoded integer prefix 0xFF")

    def lenenc_bytes(self) -> bytes:
        data, pos = self.data, self.pos
        if pos < self.end and data[pos] < 0xFB:  # a one-byte length: the common case, inline
            stop = pos + 1 + data[pos]
            if stop > self.end:
                raise RemoteProtocolError(
                    f"packet too short: need {data[pos]} bytes at offset {pos + 1}, have {self.end - pos - 1}")
            self.pos = stop
            return bytes(data[pos + 1:stop])
        n = self.lenenc_int()
        if n is None:
            raise RemoteProtocolError("unexpected NULL length-encoded string")
        return self.fixed(n)

    def fixed(self, n: int) -> bytes:
        start = self._take(n)
        return bytes(self.data[start:start + n])

    def nul_bytes(self) -> bytes:
        """A NUL-terminated string; the NUL is consumed, not returned."""
        data = self.data
        start = self.pos
        if isinstance(data, memoryview):
            idx = bytes(data[start:self.end]).find(b"\0")
            idx = -1 if idx < 0 else idx + start
        else:
            idx = data.find(b"\0", start, self.end)
        if idx < 0:
            raise RemoteProtocolError(f"missing NUL terminator after offset {start}")
        self.pos = idx + 1
        return bytes(data[start:idx])

    def rest(self) -> bytes:
        start = self.pos
        self.pos = self.end
        return bytes(self.data[start:self.end])


def int1(n: int) -> bytes:
    return bytes((n & 0xFF,))


def int2(n: int) -> bytes:
    return _I2.pack(n & 0xFFFF)


def int3(n: int) -> bytes:
    return (n & 0xFFFFFF).to_bytes(3, "little")


def int4(n: int) -> bytes:
    return _I4.pack(n & 0xFFFFFFFF)


def int8(n: int) -> bytes:
    return _I8.pack(n)


def lenenc_int(n: int) -> bytes:
    if n < 0:
        raise ValueError("length-encoded integers are unsigned")
    if n < 0xFB:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + _I2.pack(n)
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + _I8.pack(n)


def lenenc_bytes(b: bytes) -> bytes:
    return lenenc_int(len(b)) + b
