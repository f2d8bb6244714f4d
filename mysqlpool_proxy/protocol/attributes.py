"""MySQL 8 query attributes (CLIENT_QUERY_ATTRIBUTES): read the block, and give the command without it.

With the capability negotiated, a COM_QUERY carries a block of named
parameters before its SQL (MySQL 8 protocol documentation,
page_protocol_com_query):

    0x03 parameter_count<lenenc> parameter_set_count<lenenc, always 1>
    [if parameter_count > 0:
        null_bitmap((count + 7) // 8)  new_params_bind_flag(1, always 1)
        (type(2) name<lenenc>) * count
        values (binary protocol encoding, none for a NULL)]
    SQL<EOF>

and a COM_STMT_EXECUTE the same block without the set count, after its
fixed part, with names after the types (protocol/stmt.py `plain_execute`).

No backend hears attributes: aiomysql opens them without the capability,
and MariaDB has none. So the proxy takes the block out (`plain_query`) and
the server gets the plain command it would get from a client that never
asked for attributes. The values are read only to find where they end,
never kept or logged.

What MySQL 8 refuses, the proxy refuses with MySQL's error, 1835 Malformed
communication packet (`AttributesRefused`), reading the block as the server
does (sql/protocol_classic.cc parse_query_bind_params, get_ps_param_len):
a count or a name cut short, more than 65535 parameters, a set count other
than 1, a bitmap or a type cut short, a COM_QUERY flag other than 1 (the
documentation's rule; the server itself takes any non-zero flag), a value
of type BOOL (244), a value whose length prefix is cut short or invalid
(0xff), and a DECIMAL or temporal value longer than what is left. A string
value longer than what is left takes the rest of the packet, as on the
server (the SQL is then empty, and the server says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import ER_MALFORMED_PACKET, FIELD_TYPE
from ..errors import RemoteProtocolError
from .wire import BytesLike

__all__ = ["AttributesRefused", "BindBlock", "read_block", "plain_query", "MAX_PARAMETERS", "MALFORMED"]

MALFORMED = "Malformed communication packet"
MAX_PARAMETERS = 65535  # MySQL's cap on parameter_count
TYPE_BOOL = 244  # MYSQL_TYPE_BOOL: refused in a parameter value
UNSIGNED = 1 << 15  # the flag byte's high bit

_FIXED_SIZE = {
    FIELD_TYPE.TINY: 1, TYPE_BOOL: 1, FIELD_TYPE.SHORT: 2, FIELD_TYPE.LONG: 4, FIELD_TYPE.FLOAT: 4,
    FIELD_TYPE.LONGLONG: 8, FIELD_TYPE.DOUBLE: 8,
}
# Length-prefixed, and the length must fit in the packet; other types' values are cut to what is left.
_STRICT_LENGTH = frozenset((FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL, FIELD_TYPE.DATE, FIELD_TYPE.TIME,
                            FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP))


class AttributesRefused(RemoteProtocolError):
    """A block MySQL 8 refuses: `errno` and the message are its own."""

    def __init__(self, errno: int = ER_MALFORMED_PACKET, message: str = MALFORMED):
        super().__init__(message, errno=errno)


@dataclass(frozen=True, slots=True)
class BindBlock:
    """A parameter block: offsets into the payload it was read from."""

    count: int
    bitmap: int  # bit i set: parameter i is NULL
    bound: int  # the new-params-bound flag (0 when count is 0)
    types: bytes | None  # 2 bytes per parameter, names dropped; None when not bound in this packet
    values: int  # where the values start
    value_ends: tuple[int, ...] | None  # where each parameter's value ends; None: not measured
    end: int  # where the block ends (None measured: the end of the packet)


def _count(payload: BytesLike, pos: int) -> tuple[int, int]:
    """A length-encoded count as the server reads it (net_field_length): 0xfb is NULL (too big),
    0xfe and 0xff take 8 bytes of which the low 4 count."""
    n = len(payload)
    if pos >= n:
        raise AttributesRefused()
    first = payload[pos]
    if first < 251:
        return first, pos + 1
    if first == 251:
        return 1 << 64, pos + 1
    size = 2 if first == 252 else 3 if first == 253 else 8
    if pos + 1 + size > n:
        raise AttributesRefused()
    return int.from_bytes(payload[pos + 1:pos + 1 + min(size, 4)], "little"), pos + 1 + size


def _value_end(payload: BytesLike, pos: int, type_code: int) -> int:
    """Where a binary-protocol value of this type starting at `pos` ends (get_ps_param_len)."""
    n = len(payload)
    field_type = type_code & ~UNSIGNED
    fixed = _FIXED_SIZE.get(field_type)
    if fixed is not None:
        if pos + fixed > n:
            raise AttributesRefused()
        return pos + fixed
    if pos >= n or payload[pos] == 255:
        raise AttributesRefused()
    first = payload[pos]
    header = 1 if first < 252 else 3 if first == 252 else 4 if first == 253 else 9
    if pos + header > n:
        raise AttributesRefused()
    length = first if header == 1 else int.from_bytes(payload[pos + 1:pos + min(header, 5)], "little")
    end = pos + header + length
    if end > n:
        if field_type in _STRICT_LENGTH:
            raise AttributesRefused()
        return n
    return end


def read_block(payload: BytesLike, pos: int, *, set_count: bool, prior_types: bytes | None = None,
               measure: bool = True) -> BindBlock:
    """The parameter block at `pos` (after COM_QUERY's command byte, after an execute's fixed part).

    `set_count`: a COM_QUERY's block, with its parameter-set count (and its flag must be 1).
    `prior_types`: an execute's types bound earlier, for values of a packet that binds none.
    `measure`: find where each value ends (False: the values are not read; `end` is then the
    packet's end, and so it is when a value's types were never bound)."""
    count, pos = _count(payload, pos)
    if set_count:
        sets, pos = _count(payload, pos)
        if sets != 1:
            raise AttributesRefused()
    if count > MAX_PARAMETERS:
        raise AttributesRefused()
    if count == 0:
        return BindBlock(0, 0, 0, None, pos, (), pos)
    n = len(payload)
    size = (count + 7) // 8
    if pos + size >= n:  # the bitmap, and the flag after it
        raise AttributesRefused()
    bitmap = int.from_bytes(payload[pos:pos + size], "little")
    pos += size
    bound = payload[pos]
    pos += 1
    if set_count and bound != 1:
        raise AttributesRefused()
    types = None
    if bound:
        parts = []
        for _ in range(count):
            if pos + 2 > n:
                raise AttributesRefused()
            parts.append(bytes(payload[pos:pos + 2]))
            name_length, pos = _count(payload, pos + 2)
            if name_length > n - pos:
                raise AttributesRefused()
            pos += name_length
        types = b"".join(parts)
    values = pos
    if not measure:
        return BindBlock(count, bitmap, bound, types, values, None, n)
    known = types if types is not None else prior_types
    ends = []
    for i in range(count):
        if not bitmap >> i & 1:
            if known is None:
                return BindBlock(count, bitmap, bound, types, values, None, n)  # types never bound
            if 2 * i + 2 > len(known):
                raise AttributesRefused()  # a value past the statement's parameters, and no type for it
            type_code = int.from_bytes(known[2 * i:2 * i + 2], "little")
            if type_code & ~UNSIGNED == TYPE_BOOL:
                raise AttributesRefused()
            pos = _value_end(payload, pos, type_code)
        ends.append(pos)
    return BindBlock(count, bitmap, bound, types, values, tuple(ends), pos)


def plain_query(payload: BytesLike) -> bytes:
    """A COM_QUERY with attributes (CLIENT_QUERY_ATTRIBUTES negotiated) as a plain one: 0x03 + SQL.
    AttributesRefused when MySQL 8 would refuse the block."""
    block = read_block(payload, 1, set_count=True)
    return b"\x03" + bytes(payload[block.end:])
