# command.py: the command table, byte by byte against the MySQL protocol's
# COM_* values (literal numbers, not the constants module): relayed commands
# and the response shape they get, commands with no reply, commands the proxy
# answers itself, and refused ones (replication, shutdown, obsolete, unknown).
from __future__ import annotations

import pytest

from mysqlpool_proxy.protocol.command import COMMAND_NAMES, CommandSpec, Handling, spec_for
from mysqlpool_proxy.protocol.response import Expect

R, N, L, X = Handling.RELAY, Handling.NO_REPLY, Handling.LOCAL, Handling.REFUSED

TABLE = {
    0x00: (X, None),  # COM_SLEEP (server-internal)
    0x01: (L, None),  # COM_QUIT
    0x02: (R, Expect.SIMPLE),  # COM_INIT_DB
    0x03: (R, Expect.RESULT),  # COM_QUERY
    0x04: (R, Expect.FIELD_LIST),  # COM_FIELD_LIST
    0x05: (R, Expect.SIMPLE),  # COM_CREATE_DB
    0x06: (R, Expect.SIMPLE),  # COM_DROP_DB
    0x07: (R, Expect.SIMPLE),  # COM_REFRESH
    0x08: (X, None),  # COM_SHUTDOWN
    0x09: (R, Expect.STATISTICS),  # COM_STATISTICS
    0x0A: (X, None),  # COM_PROCESS_INFO
    0x0B: (X, None),  # COM_CONNECT (server-internal)
    0x0C: (L, None),  # COM_PROCESS_KILL
    0x0D: (R, Expect.SIMPLE),  # COM_DEBUG
    0x0E: (L, None),  # COM_PING
    0x0F: (X, None),  # COM_TIME (server-internal)
    0x10: (X, None),  # COM_DELAYED_INSERT (server-internal)
    0x11: (L, None),  # COM_CHANGE_USER
    0x12: (X, None),  # COM_BINLOG_DUMP
    0x13: (X, None),  # COM_TABLE_DUMP
    0x14: (X, None),  # COM_CONNECT_OUT
    0x15: (X, None),  # COM_REGISTER_SLAVE
    0x16: (R, Expect.PREPARE),  # COM_STMT_PREPARE
    0x17: (R, Expect.RESULT),  # COM_STMT_EXECUTE
    0x18: (N, None),  # COM_STMT_SEND_LONG_DATA
    0x19: (N, None),  # COM_STMT_CLOSE
    0x1A: (R, Expect.SIMPLE),  # COM_STMT_RESET
    0x1B: (L, None),  # COM_SET_OPTION
    0x1C: (R, Expect.FETCH),  # COM_STMT_FETCH
    0x1D: (X, None),  # COM_DAEMON (server-internal)
    0x1E: (X, None),  # COM_BINLOG_DUMP_GTID
    0x1F: (L, None),  # COM_RESET_CONNECTION
    0xFA: (R, Expect.RESULT),  # COM_STMT_BULK_EXECUTE (MariaDB)
}


@pytest.mark.parametrize("code", sorted(TABLE))
def test_command_table(code):
    handling, expect = TABLE[code]
    spec = spec_for(code)
    assert isinstance(spec, CommandSpec)
    assert spec.code == code
    assert spec.handling is handling
    assert spec.expect is expect
    assert spec.name == COMMAND_NAMES[code]
    if handling is Handling.RELAY:
        assert expect is not None


@pytest.mark.parametrize("code", [0x12, 0x15, 0x08, 0x1E])
def test_replication_and_shutdown_refused(code):
    assert spec_for(code).handling is Handling.REFUSED


@pytest.mark.parametrize("code", [0x20, 0x21, 0x50, 0xFB, 0xFE, 0xFF])
def test_unknown_commands_refused(code):
    # 0xFE/0xFF never were commands (0xFA is MariaDB's COM_STMT_BULK_EXECUTE: test_bulk.py)
    spec = spec_for(code)
    assert spec.handling is Handling.REFUSED
    assert spec.expect is None
    assert spec.name == "unknown"
    assert code not in COMMAND_NAMES


def test_every_byte_has_a_spec():
    for code in range(256):
        spec = spec_for(code)
        assert spec.code == code
        assert (spec.expect is not None) == (spec.handling is Handling.RELAY)


def test_names_are_lowercase_labels():
    assert COMMAND_NAMES[0x03] == "query"
    assert COMMAND_NAMES[0x1F] == "reset_connection"
    assert COMMAND_NAMES[0x16] == "stmt_prepare"
    for name in COMMAND_NAMES.values():
        assert name == name.lower() and " " not in name
    assert len(set(COMMAND_NAMES.values())) == len(COMMAND_NAMES)
    assert set(COMMAND_NAMES) == set(TABLE)
