"""Binary-protocol statement commands: read and rewrite their statement ids and parameter types.

The proxy gives each client its own statement ids and maps them to the ids
of statements prepared on whichever backend serves the command, so every
COM_STMT_* packet that carries an id is rewritten on its way to the server,
and the prepare-OK on its way back.

COM_STMT_EXECUTE layout (MySQL/MariaDB, protocol 4.1):

    0x17 stmt_id(4) flags(1) iteration_count(4)
    [if params > 0:
        null_bitmap((params + 7) // 8)
        new_params_bound_flag(1)
        [if flag == 1: param_type(2) * params]
        values...]

When new_params_bound_flag is 0 the server reuses the types bound by an
earlier execute of the same server statement. A statement re-prepared on
another backend has none, so the proxy puts the client's last types back
(`with_types`). Cursor flags live in `flags` (CURSOR_TYPE_READ_ONLY = 1).

`parse_execute` refuses what MariaDB refuses before reading the values, with
MariaDB's own error (ExecuteRefused): a packet shorter than the fixed part,
1835; one that ends before the new-params-bound flag, 1210; a flag other
than 0 or 1, or types cut short, 1835. The values themselves are the
server's to check (1210). The client side checks each execute this way once,
before taking a backend, so that rewriting it later cannot fail.

Types live on the server statement, which the proxy shares between clients:
an execute that binds none, of a statement whose client never bound any,
would run with another client's types. MariaDB refuses it (1210) unless all
its parameters are NULL (`nulls_only`), and so does the proxy.

A client that negotiated CLIENT_QUERY_ATTRIBUTES (MySQL 8) sends the MySQL 8
form (page_protocol_com_stmt_execute): when the statement has parameters, or
when flags has PARAMETER_COUNT_AVAILABLE (0x08), a parameter_count<lenenc>
follows the fixed part, and each bound type is followed by a name<lenenc>.
The count may exceed the statement's parameters: the rest are attributes.
`plain_execute` turns it into the form above (the flag cleared, the count and
names dropped, the statement's own parameters kept, the attributes left
out), refusing what MySQL 8 refuses (protocol/attributes.py) and a count
below the statement's parameters (1210). While long data waits on the
statement its values are not read (which parameters it fills is the
server's to know), so the attributes' values stay at the end of the packet,
where the server does not read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import ER, ER_MALFORMED_PACKET
from ..errors import RemoteProtocolError
from .attributes import AttributesRefused, read_block
from .wire import BytesLike

__all__ = ["ExecuteHeader", "ExecuteRefused", "parse_execute", "plain_execute", "nulls_only", "with_statement_id",
           "with_types", "CURSOR_TYPE_READ_ONLY", "PARAMETER_COUNT_AVAILABLE", "EXECUTE_FIXED_SIZE", "MALFORMED",
           "WRONG_ARGUMENTS"]

CURSOR_TYPE_READ_ONLY = 0x01
PARAMETER_COUNT_AVAILABLE = 0x08  # MySQL 8: a parameter_count follows the fixed part
EXECUTE_FIXED_SIZE = 10  # 0x17 stmt_id(4) flags(1) iteration_count(4)
MALFORMED = "Malformed communication packet"
WRONG_ARGUMENTS = "Incorrect arguments to mysqld_stmt_execute"


class ExecuteRefused(RemoteProtocolError):
    """A COM_STMT_EXECUTE that MariaDB refuses: `errno` and the message are its own."""

    def __init__(self, errno: int, message: str):
        super().__init__(message, errno=errno)


@dataclass(frozen=True, slots=True)
class ExecuteHeader:
    stmt_id: int
    flags: int
    types_bound: bool  # new-params-bound flag
    types: bytes | None  # 2 bytes per parameter, when bound in this packet
    flag_offset: int  # where the new-params-bound flag sits (-1 when there are no parameters)


def statement_id(payload: BytesLike) -> int:
    if len(payload) < 5:
        raise RemoteProtocolError("statement command too short for a statement id")
    return int.from_bytes(payload[1:5], "little")


def with_statement_id(payload: bytes, stmt_id: int) -> bytes:
    """The same command for another statement id (same length)."""
    return payload[:1] + stmt_id.to_bytes(4, "little") + payload[5:]


def parse_execute(payload: BytesLike, params: int) -> ExecuteHeader:
    """The fixed part of an execute of a statement with `params` parameters (ExecuteRefused
    when MariaDB would refuse it before reading the values)."""
    if len(payload) < EXECUTE_FIXED_SIZE:
        raise ExecuteRefused(ER_MALFORMED_PACKET, MALFORMED)
    stmt_id = int.from_bytes(payload[1:5], "little")
    flags = payload[5]
    if params == 0:
        return ExecuteHeader(stmt_id, flags, False, None, -1)
    flag_offset = EXECUTE_FIXED_SIZE + (params + 7) // 8
    if len(payload) <= flag_offset:
        raise ExecuteRefused(ER.WRONG_ARGUMENTS, WRONG_ARGUMENTS)
    flag = payload[flag_offset]
    if flag > 1:
        raise ExecuteRefused(ER_MALFORMED_PACKET, MALFORMED)
    types = None
    if flag:
        end = flag_offset + 1 + 2 * params
        if len(payload) < end:
            raise ExecuteRefused(ER_MALFORMED_PACKET, MALFORMED)
        types = bytes(payload[flag_offset + 1:end])
    return ExecuteHeader(stmt_id, flags, flag == 1, types, flag_offset)


def nulls_only(payload: BytesLike, params: int) -> bool:
    """Are all `params` parameters of this execute (parsed by parse_execute) NULL?"""
    bitmap = int.from_bytes(payload[EXECUTE_FIXED_SIZE:EXECUTE_FIXED_SIZE + (params + 7) // 8], "little")
    every = (1 << params) - 1
    return bitmap & every == every


def with_types(payload: bytes, header: ExecuteHeader, types: bytes) -> bytes:
    """An execute that relied on earlier-bound types, with those types bound explicitly."""
    if header.types_bound or header.flag_offset < 0:
        return payload
    off = header.flag_offset
    return payload[:off] + b"\x01" + types + payload[off + 1:]


def plain_execute(payload: BytesLike, params: int, prior_types: bytes | None, long_data: bool) -> bytes:
    """The MySQL 8 form of an execute of a statement with `params` parameters (a client with
    CLIENT_QUERY_ATTRIBUTES) in the form above; `prior_types`: the types its client bound last;
    `long_data`: long data waits on it. ExecuteRefused when MySQL 8 would refuse it."""
    if len(payload) < EXECUTE_FIXED_SIZE:
        raise ExecuteRefused(ER_MALFORMED_PACKET, MALFORMED)
    flags = payload[5]
    if params == 0 and not flags & PARAMETER_COUNT_AVAILABLE:
        return bytes(payload)  # the server reads nothing after the fixed part
    try:
        block = read_block(payload, EXECUTE_FIXED_SIZE, set_count=False, prior_types=prior_types,
                           measure=not long_data)
    except AttributesRefused as exc:
        raise ExecuteRefused(exc.errno, str(exc)) from None
    fixed = bytes(payload[:5]) + bytes((flags & ~PARAMETER_COUNT_AVAILABLE,)) + bytes(payload[6:EXECUTE_FIXED_SIZE])
    if params == 0:
        return fixed
    if block.count < params:
        raise ExecuteRefused(ER.WRONG_ARGUMENTS, WRONG_ARGUMENTS)
    bitmap = (block.bitmap & ((1 << params) - 1)).to_bytes((params + 7) // 8, "little")
    types = block.types[:2 * params] if block.types is not None else b""
    end = block.value_ends[params - 1] if block.value_ends is not None else len(payload)
    return fixed + bitmap + bytes((block.bound,)) + types + bytes(payload[block.values:end])
