"""What a query text does to the transaction, where the server's status flag does not say.

The server sets SERVER_STATUS_IN_TRANS once a transaction has touched a
transactional table (and at BEGIN). With autocommit off, a transaction is
open from the first statement, whatever the flag says: `SAVEPOINT s1` before
any table lives on the server connection, and the next statement must find
it there. So a client with autocommit off is "in a transaction" after any
statement, until a COMMIT or ROLLBACK ends it (`leaves_transaction_open`).

`noop_transaction_command` recognises the statements that need no server
connection when no transaction is open: COMMIT, ROLLBACK, and setting
autocommit to the value it already has (every DBAPI pool sends ROLLBACK on
connection return). Only short texts are looked at; the patterns have no
nested quantifiers, so they run in time linear in the text.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Final

from .sql import WORD, Token, split_statements, tokenize

__all__ = ["NoopCommand", "noop_transaction_command", "leaves_transaction_open"]

NOOP_MAX_LENGTH: Final = 64  # longer texts are never a bare COMMIT / ROLLBACK / SET autocommit


class NoopCommand(enum.Enum):
    END = "end"  # COMMIT or ROLLBACK with no transaction open
    AUTOCOMMIT_ON = "autocommit_on"
    AUTOCOMMIT_OFF = "autocommit_off"


_END = re.compile(rb"[ \t\r\n]*(?:commit|rollback)(?:[ \t\r\n]+work)?[ \t\r\n]*;?[ \t\r\n]*", re.I)
_AUTOCOMMIT = re.compile(
    rb"[ \t\r\n]*set[ \t\r\n]+(?:(?:session|local)[ \t\r\n]+|@@(?:session\.|local\.)?)?autocommit"
    rb"[ \t\r\n]*:?=[ \t\r\n]*(?P<value>1|0|on|off|true|false)[ \t\r\n]*;?[ \t\r\n]*", re.I)
_ON = (b"1", b"on", b"true")


def noop_transaction_command(sql: bytes) -> NoopCommand | None:
    """A bare COMMIT / ROLLBACK / SET autocommit = value (None for anything else). (Remembered per
    text: pools send the same few again and again, and drivers the same SET at every connect.)"""
    if len(sql) > NOOP_MAX_LENGTH:
        return None
    return _noop_command(sql)


@functools.lru_cache(maxsize=256)
def _noop_command(sql: bytes) -> NoopCommand | None:
    if _END.fullmatch(sql):
        return NoopCommand.END
    m = _AUTOCOMMIT.fullmatch(sql)
    if m is None:
        return None
    return NoopCommand.AUTOCOMMIT_ON if m.group("value").lower() in _ON else NoopCommand.AUTOCOMMIT_OFF


def leaves_transaction_open(sql: bytes, ran_under_autocommit: bool, quoting: int = 0) -> bool:
    """With autocommit off after `sql` and no IN_TRANS flag: is a transaction open?

    Yes after any statement run with autocommit off, unless the last one was a
    plain COMMIT or ROLLBACK (not `ROLLBACK TO SAVEPOINT`, not `AND CHAIN`).
    `ran_under_autocommit`: autocommit was on when the text started; a single
    statement then (`SET autocommit = 0`) opened nothing. `quoting`: as for sql.analyze.
    """
    statements = split_statements(tokenize(sql, quoting))
    if not statements:
        return False
    if len(statements) == 1 and ran_under_autocommit:
        return False
    return not _ends_transaction(statements[-1])


def _ends_transaction(stmt: list[Token]) -> bool:
    words = [value for kind, value in stmt if kind == WORD]
    if len(words) != len(stmt) or not words or words[0] not in (b"commit", b"rollback"):
        return False
    rest = words[1:]
    if rest[:1] == [b"work"]:
        rest = rest[1:]
    if rest[:3] == [b"and", b"no", b"chain"]:
        rest = rest[3:]
    elif rest[:1] == [b"and"]:
        return False  # AND CHAIN: a new transaction opens at once
    return rest in ([], [b"release"], [b"no", b"release"])
