"""Client commands: how the proxy handles each COM_* byte.

One table maps each command byte to what the proxy does with it:

* RELAY: sent to a backend; the response (of shape `expect`) comes back
  (COM_STMT_BULK_EXECUTE to a client that negotiated MariaDB's bulk
  operations: protocol/bulk.py).
* NO_REPLY: sent to a backend; the server sends nothing back.
* LOCAL: answered by the proxy itself (QUIT, PING, SET_OPTION, CHANGE_USER,
  RESET_CONNECTION, PROCESS_KILL): they concern the client's session with
  the proxy, not a backend's.
* REFUSED: replication, shutdown and obsolete commands; the client gets a
  clear ERR and keeps its connection.

Anything not in the table is unknown and refused the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..constants import COM_RESET_CONNECTION, COM_STMT_BULK_EXECUTE, COMMAND
from .response import Expect

__all__ = ["Handling", "CommandSpec", "spec_for", "COMMAND_NAMES"]


class Handling(enum.Enum):
    RELAY = "relay"
    NO_REPLY = "no_reply"
    LOCAL = "local"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    code: int
    name: str  # lower-case label, e.g. "query"; used in metrics and logs
    handling: Handling
    expect: Expect | None = None


def _spec(code: int, name: str, handling: Handling, expect: Expect | None = None) -> CommandSpec:
    return CommandSpec(code, name, handling, expect)


_R, _N, _L, _X = Handling.RELAY, Handling.NO_REPLY, Handling.LOCAL, Handling.REFUSED

_TABLE = {
    spec.code: spec
    for spec in (
        _spec(COMMAND.COM_QUERY, "query", _R, Expect.RESULT),
        _spec(COMMAND.COM_STMT_PREPARE, "stmt_prepare", _R, Expect.PREPARE),
        _spec(COMMAND.COM_STMT_EXECUTE, "stmt_execute", _R, Expect.RESULT),
        _spec(COMMAND.COM_STMT_FETCH, "stmt_fetch", _R, Expect.FETCH),
        _spec(COM_STMT_BULK_EXECUTE, "stmt_bulk_execute", _R, Expect.RESULT),  # MariaDB (protocol/bulk.py)
        _spec(COMMAND.COM_STMT_RESET, "stmt_reset", _R, Expect.SIMPLE),
        _spec(COMMAND.COM_STMT_CLOSE, "stmt_close", _N),
        _spec(COMMAND.COM_STMT_SEND_LONG_DATA, "stmt_send_long_data", _N),
        _spec(COMMAND.COM_INIT_DB, "init_db", _R, Expect.SIMPLE),
        _spec(COMMAND.COM_FIELD_LIST, "field_list", _R, Expect.FIELD_LIST),
        _spec(COMMAND.COM_STATISTICS, "statistics", _R, Expect.STATISTICS),
        _spec(COMMAND.COM_DEBUG, "debug", _R, Expect.SIMPLE),
        _spec(COMMAND.COM_REFRESH, "refresh", _R, Expect.SIMPLE),
        _spec(COMMAND.COM_CREATE_DB, "create_db", _R, Expect.SIMPLE),
        _spec(COMMAND.COM_DROP_DB, "drop_db", _R, Expect.SIMPLE),
        _spec(COMMAND.COM_QUIT, "quit", _L),
        _spec(COMMAND.COM_PING, "ping", _L),
        _spec(COMMAND.COM_SET_OPTION, "set_option", _L),
        _spec(COMMAND.COM_CHANGE_USER, "change_user", _L),
        _spec(COM_RESET_CONNECTION, "reset_connection", _L),
        _spec(COMMAND.COM_PROCESS_KILL, "process_kill", _L),
        _spec(COMMAND.COM_SHUTDOWN, "shutdown", _X),
        _spec(COMMAND.COM_PROCESS_INFO, "process_info", _X),
        _spec(COMMAND.COM_BINLOG_DUMP, "binlog_dump", _X),
        _spec(COMMAND.COM_BINLOG_DUMP_GTID, "binlog_dump_gtid", _X),
        _spec(COMMAND.COM_REGISTER_SLAVE, "register_slave", _X),
        _spec(COMMAND.COM_TABLE_DUMP, "table_dump", _X),
        _spec(COMMAND.COM_CONNECT_OUT, "connect_out", _X),
        _spec(COMMAND.COM_SLEEP, "sleep", _X),
        _spec(COMMAND.COM_CONNECT, "connect", _X),
        _spec(COMMAND.COM_TIME, "time", _X),
        _spec(COMMAND.COM_DELAYED_INSERT, "delayed_insert", _X),
        _spec(COMMAND.COM_DAEMON, "daemon", _X),
    )
}

COMMAND_NAMES = {code: spec.name for code, spec in _TABLE.items()}


def spec_for(code: int) -> CommandSpec:
    spec = _TABLE.get(code)
    if spec is None:
        return CommandSpec(code, "unknown", Handling.REFUSED)
    return spec
