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
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RemoteProtocolError

__all__ = ["ExecuteHeader", "parse_execute", "with_statement_id", "with_types", "CURSOR_TYPE_READ_ONLY"]

CURSOR_TYPE_READ_ONLY = 0x01


@dataclass(frozen=True, slots=True)
class ExecuteHeader:
    stmt_id: int
    flags: int
    types_bound: bool  # new-params-bound flag
    types: bytes | None  # 2 bytes per parameter, when bound in this packet
    flag_offset: int  # where the new-params-bound flag sits (-1 when there are no parameters)


def statement_id(payload) -> int:
    if len(payload) < 5:
        raise RemoteProtocolError("statement command too short for a statement id")
    return int.from_bytes(payload[1:5], "little")


def with_statement_id(payload: bytes, stmt_id: int) -> bytes:
    """The same command for another statement id (same length)."""
    return payload[:1] + stmt_id.to_bytes(4, "little") + payload[5:]


def parse_execute(payload, params: int) -> ExecuteHeader:
    if len(payload) < 10:
        raise RemoteProtocolError("COM_STMT_EXECUTE too short")
    stmt_id = int.from_bytes(payload[1:5], "little")
    flags = payload[5]
    if params == 0:
        return ExecuteHeader(stmt_id, flags, False, None, -1)
    flag_offset = 10 + (params + 7) // 8
    if len(payload) <= flag_offset:
        raise RemoteProtocolError("COM_STMT_EXECUTE ends before its new-params-bound flag")
    bound = payload[flag_offset] == 1
    types = None
    if bound:
        end = flag_offset + 1 + 2 * params
        if len(payload) < end:
            raise RemoteProtocolError("COM_STMT_EXECUTE ends inside its parameter types")
        types = bytes(payload[flag_offset + 1:end])
    return ExecuteHeader(stmt_id, flags, bound, types, flag_offset)


def with_types(payload: bytes, header: ExecuteHeader, types: bytes) -> bytes:
    """An execute that relied on earlier-bound types, with those types bound explicitly."""
    if header.types_bound or header.flag_offset < 0:
        return payload
    off = header.flag_offset
    return payload[:off] + b"\x01" + types + payload[off + 1:]
