"""Client connection states, their transitions, and the constants the client modules share.

`ClientState` is the state of one client connection (see client.py for what
each means). The allowed transitions are a table; `ClientConnection.set_state`
refuses any other. The error numbers are the ones the proxy itself sends.
"""

from __future__ import annotations

import enum

from .constants import COMMAND, CR, SERVER_STATUS

__all__ = ["ClientState", "IN_TRANS", "AUTOCOMMIT", "CURSOR_EXISTS", "LAST_ROW_SENT", "STICKY_STATUS", "HANDSHAKE_TIMEOUT", "MAX_LOGGING_IN", "MAX_QUEUED_INPUT", "ER_LOST_BACKEND", "ER_UNKNOWN_STMT_HANDLER", "NEUTRAL_DIAGNOSTICS", "ER_STMT_HAS_NO_OPEN_CURSOR", "ER_IDLE_TRANSACTION", "NO_REPLY_CODES", "STMT_ID_COMMANDS"]

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
CURSOR_EXISTS = SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
LAST_ROW_SENT = SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
# Status bits that describe the session rather than one response.
STICKY_STATUS = IN_TRANS | AUTOCOMMIT | SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES | 0x2000 | 0x8000

# Seconds from the greeting to the end of the login (the server's 10 s connect_timeout). A client
# waiting to be greeted (the server's identity unknown yet) waits up to checkout_timeout instead.
HANDSHAKE_TIMEOUT = 10.0
# Connections logging in at once, per process; one more closes the oldest of them (proxy_refusals.py).
MAX_LOGGING_IN = 1024
# Bytes of pipelined input a busy client may queue before the proxy stops reading it.
MAX_QUEUED_INPUT = 1 << 20

ER_LOST_BACKEND = CR.CR_SERVER_LOST
ER_UNKNOWN_STMT_HANDLER = 1243
# Run before a diagnostics reader on a backend whose last statement was not this
# client's: a statement that uses a (derived) table resets the warnings list,
# and leaves ROW_COUNT() = -1 and FOUND_ROWS() = 1: the proxy's, not another client's.
NEUTRAL_DIAGNOSTICS = b"SELECT * FROM (SELECT 1) AS mysqlpool_neutral"
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
# ER_XA_RBTIMEOUT, "Transaction branch was rolled back: took too long": the closest
# standard error to "your idle transaction was rolled back"; SQLSTATE class 40 is
# "transaction rollback", which retry logic in applications looks for.
ER_IDLE_TRANSACTION = 1400


class ClientState(enum.Enum):
    GREETING = "greeting"
    HANDSHAKE = "handshake"
    READY = "ready"
    CHECKOUT = "checkout"
    ACTIVE = "active"
    INFILE = "infile"
    LOCAL = "local"
    CLOSED = "closed"


_C = ClientState
_ALLOWED = {
    _C.GREETING: {_C.HANDSHAKE, _C.CLOSED},
    _C.HANDSHAKE: {_C.READY, _C.CLOSED},
    _C.READY: {_C.CHECKOUT, _C.ACTIVE, _C.LOCAL, _C.CLOSED},
    _C.CHECKOUT: {_C.ACTIVE, _C.READY, _C.CLOSED},
    _C.ACTIVE: {_C.READY, _C.INFILE, _C.CLOSED},
    _C.INFILE: {_C.ACTIVE, _C.CLOSED},
    _C.LOCAL: {_C.READY, _C.CLOSED},
    _C.CLOSED: set(),
}
# The table, on each member (a tuple: membership tests by identity, no enum hashing).
for _state, _next in _ALLOWED.items():
    _state.allowed = tuple(_next)


NO_REPLY_CODES = frozenset((COMMAND.COM_STMT_CLOSE, COMMAND.COM_STMT_SEND_LONG_DATA, COMMAND.COM_QUIT))

STMT_ID_COMMANDS = frozenset((
    COMMAND.COM_STMT_EXECUTE, COMMAND.COM_STMT_FETCH, COMMAND.COM_STMT_RESET, COMMAND.COM_STMT_CLOSE,
    COMMAND.COM_STMT_SEND_LONG_DATA,
))
