# protocol/transaction.py: which texts leave a transaction open with autocommit
# off, and which are no-op COMMIT / ROLLBACK / SET autocommit; both linear.
from __future__ import annotations

import pytest

from mysqlpool_proxy.protocol.transaction import NoopCommand, leaves_transaction_open, noop_transaction_command


@pytest.mark.parametrize("sql, expected", [
    (b"COMMIT", NoopCommand.END), (b"rollback", NoopCommand.END), (b"  Commit Work ; ", NoopCommand.END),
    (b"ROLLBACK WORK", NoopCommand.END),
    (b"SET autocommit=1", NoopCommand.AUTOCOMMIT_ON), (b"SET AUTOCOMMIT = 0", NoopCommand.AUTOCOMMIT_OFF),
    (b"set session autocommit := ON", NoopCommand.AUTOCOMMIT_ON), (b"SET @@autocommit=off", NoopCommand.AUTOCOMMIT_OFF),
    (b"SET @@session.autocommit = true", NoopCommand.AUTOCOMMIT_ON),
    (b"SET LOCAL autocommit=false", NoopCommand.AUTOCOMMIT_OFF),
    (b"ROLLBACK TO SAVEPOINT s1", None), (b"COMMIT AND CHAIN", None), (b"COMMIT RELEASE", None),
    (b"SET autocommit=1, sql_mode=''", None), (b"SET GLOBAL autocommit=1", None), (b"SET @autocommit=1", None),
    (b"COMMIT; SELECT 1", None), (b"SELECT 1", None), (b"", None), (b"SET autocommit=" + b" " * 100 + b"1", None),
])
def test_noop_transaction_commands(sql, expected):
    assert noop_transaction_command(sql) is expected


@pytest.mark.parametrize("sql, under_autocommit, expected", [
    (b"SAVEPOINT s1", False, True),
    (b"SELECT 1", False, True),
    (b"COMMIT", False, False),
    (b"rollback work", False, False),
    (b"ROLLBACK AND NO CHAIN", False, False),
    (b"ROLLBACK TO SAVEPOINT s1", False, True),
    (b"ROLLBACK TO s1", False, True),
    (b"COMMIT AND CHAIN", False, True),
    (b"SELECT 1; COMMIT", False, False),
    (b"COMMIT; SAVEPOINT s1", False, True),
    (b"SET autocommit=0", True, False),  # it ran with autocommit on: nothing opened
    (b"SET autocommit=0; SAVEPOINT s1", True, True),
    (b"SET autocommit=0; COMMIT", True, False),
    (b"/* COMMIT */ SELECT 'COMMIT'", False, True),
    (b"", False, False),
])
def test_leaves_transaction_open(sql, under_autocommit, expected):
    assert leaves_transaction_open(sql, under_autocommit) is expected
