"""The constants the client modules share: bounds, and the error numbers the proxy itself sends.

(Status bits and command sets are core/client_session.py's; the client's
states and their transitions core/states.py's.)
"""

from __future__ import annotations

from typing import Final

from ..constants import CR

__all__ = ["HANDSHAKE_TIMEOUT", "MAX_LOGGING_IN", "MAX_QUEUED_INPUT", "ER_LOST_BACKEND", "ER_UNKNOWN_STMT_HANDLER",
           "NEUTRAL_DIAGNOSTICS", "ER_STMT_HAS_NO_OPEN_CURSOR", "ER_IDLE_TRANSACTION", "ER_CONNECTION_KILLED"]

# Seconds from the greeting to the end of the login (the server's 10 s connect_timeout). A client
# waiting to be greeted (the server's identity unknown yet) waits up to checkout_timeout instead.
HANDSHAKE_TIMEOUT: Final = 10.0
# Connections logging in at once, per process; one more closes the oldest of them (proxy/refusals.py).
MAX_LOGGING_IN = 1024  # (not Final: tests lower it)
# Bytes of pipelined input a busy client may queue before the proxy stops reading it.
MAX_QUEUED_INPUT = 1 << 20

ER_LOST_BACKEND = CR.CR_SERVER_LOST
ER_UNKNOWN_STMT_HANDLER = 1243
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
ER_CONNECTION_KILLED = 1927
# ER_XA_RBTIMEOUT, "Transaction branch was rolled back: took too long": the closest
# standard error to "your idle transaction was rolled back"; SQLSTATE class 40 is
# "transaction rollback", which retry logic in applications looks for.
ER_IDLE_TRANSACTION = 1400

# Run before a diagnostics reader on a backend whose last statement was not this
# client's: a statement that uses a (derived) table resets the warnings list,
# and leaves ROW_COUNT() = -1 and FOUND_ROWS() = 1: the proxy's, not another client's.
NEUTRAL_DIAGNOSTICS = b"SELECT * FROM (SELECT 1) AS mysqlpool_neutral"
