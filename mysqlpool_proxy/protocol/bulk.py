"""MariaDB's COM_STMT_BULK_EXECUTE: check it as the server does, and give it the types its statement lacks.

A client that negotiated MARIADB_CLIENT_STMT_BULK_OPERATIONS executes a
prepared statement once per parameter set ("row") in one command:

    0xFA stmt_id(4) flags(2)
    [flags & SEND_TYPES_TO_SERVER: type(1) type_flags(1), once per parameter]
    rows to the end of the packet: per parameter, indicator(1) [its value when the indicator is NONE (0);
                                   NULL (1), DEFAULT (2) and IGNORE (3) have none]

The server answers OK (the rows' affected rows added up) or ERR, and the
statement is one: an INSERT whose third row fails keeps no row. INSERT ...
RETURNING answers with a result set of binary rows, and so does a bulk with
SEND_UNIT_RESULTS (MariaDB 11.5+, on a connection that negotiated
MARIADB_CLIENT_BULK_UNIT_RESULTS): one row of affected rows and insert id
per parameter set. To response.py all of these are a RESULT, as for
COM_STMT_EXECUTE.

The types are the 2 bytes per parameter of COM_STMT_EXECUTE, and the server
keeps them on its statement for both commands: a bulk without them runs with
the types the last execute or bulk bound (on a statement that never had any,
MariaDB refuses it with 1210, unless its rows carry no value). A client's
statement re-prepared on another backend has none there, so the proxy sets
SEND_TYPES_TO_SERVER and puts in the types its client bound last
(`with_bulk_types`), as stmt.py's `with_types` does for an execute; and since
server statements are shared by the clients of a pool, a bulk without types
from a client that never bound any is refused with MariaDB's 1210 before it
can run with another client's.

`check_bulk` refuses, with MariaDB 10.11's own errors (ExecuteRefused), in its
order, what the server refuses before it looks the statement up: fewer than
6 bytes after the command byte (1835), a client that did not negotiate bulk
operations (1295), flags other than SEND_TYPES_TO_SERVER, and
SEND_UNIT_RESULTS for a client that negotiated MARIADB_CLIENT_BULK_UNIT_RESULTS
(1295: a backend that negotiated it would honour it). `parse_bulk` then
reads the header against the statement: types cut short get 1835. Neither
reads the rows: their values are the server's to check.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import (
    ER,
    ER_MALFORMED_PACKET,
    MARIADB_CLIENT_BULK_UNIT_RESULTS,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
)
from .stmt import MALFORMED, ExecuteRefused
from .wire import BytesLike

__all__ = ["BulkHeader", "check_bulk", "parse_bulk", "indicators_only", "with_bulk_types", "BULK_HEADER_SIZE",
           "SEND_TYPES_TO_SERVER", "SEND_UNIT_RESULTS", "UNSUPPORTED", "WRONG_BULK_ARGUMENTS"]

BULK_HEADER_SIZE = 7  # 0xFA stmt_id(4) flags(2)
SEND_UNIT_RESULTS = 64
SEND_TYPES_TO_SERVER = 128
UNSUPPORTED = "This command is not supported in the prepared statement protocol yet"
WRONG_BULK_ARGUMENTS = "Incorrect arguments to mysqld_stmt_bulk_execute"
_NO_VALUE_INDICATORS = frozenset((1, 2, 3))  # NULL, DEFAULT, IGNORE


@dataclass(frozen=True, slots=True)
class BulkHeader:
    stmt_id: int
    flags: int
    types: bytes | None  # 2 bytes per parameter, when this packet sends them


def check_bulk(payload: BytesLike, capabilities: int) -> None:
    """ExecuteRefused for a bulk the server refuses before it looks its statement up (see above)."""
    if len(payload) < BULK_HEADER_SIZE:
        raise ExecuteRefused(ER_MALFORMED_PACKET, MALFORMED)
    if not capabilities & MARIADB_CLIENT_STMT_BULK_OPERATIONS:
        raise ExecuteRefused(ER.UNSUPPORTED_PS, UNSUPPORTED)
    allowed = SEND_TYPES_TO_SERVER | (SEND_UNIT_RESULTS if capabilities & MARIADB_CLIENT_BULK_UNIT_RESULTS else 0)
    if (payload[5] | payload[6] << 8) & ~allowed:
        raise ExecuteRefused(ER.UNSUPPORTED_PS, UNSUPPORTED)


def parse_bulk(payload: BytesLike, params: int) -> BulkHeader:
    """The header of a bulk (checked by check_bulk) of a statement with `params` parameters;
    ExecuteRefused (1835) when it says it sends types and they are cut short."""
    stmt_id = int.from_bytes(payload[1:5], "little")
    flags = payload[5] | payload[6] << 8
    if not flags & SEND_TYPES_TO_SERVER or params == 0:
        return BulkHeader(stmt_id, flags, None)  # (without parameters the server refuses it: 1295)
    end = BULK_HEADER_SIZE + 2 * params
    if len(payload) < end:
        raise ExecuteRefused(ER_MALFORMED_PACKET, MALFORMED)
    return BulkHeader(stmt_id, flags, bytes(payload[BULK_HEADER_SIZE:end]))


def indicators_only(payload: BytesLike) -> bool:
    """Do the rows of a bulk without types carry no value (only NULL, DEFAULT and IGNORE indicators)?
    A value follows a NONE indicator, 0, so rows with none are bytes 1 to 3 and nothing else."""
    return all(b in _NO_VALUE_INDICATORS for b in payload[BULK_HEADER_SIZE:])


def with_bulk_types(payload: bytes, types: bytes) -> bytes:
    """A bulk without types (parse_bulk's `types` None), with `types` sent."""
    flags = payload[5] | payload[6] << 8 | SEND_TYPES_TO_SERVER
    return payload[:5] + flags.to_bytes(2, "little") + types + payload[BULK_HEADER_SIZE:]
