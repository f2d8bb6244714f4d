"""Protocol constants: PyMySQL's, plus the few it lacks.

CLIENT, COMMAND, SERVER_STATUS, ER, CR and FIELD_TYPE are PyMySQL's own
modules, re-exported so the rest of the proxy has one import site. Only what
PyMySQL does not define is defined here: capability bits above 24 (MariaDB's
extended capabilities, bits 32 to 37, included), the status bits above 0x400,
COM_RESET_CONNECTION (PyMySQL's COM_END = 0x1F is stale) and MariaDB's
COM_STMT_BULK_EXECUTE, the session-state-change types and the SQLSTATE map.
"""

from typing import Final

from pymysql.constants import CLIENT, COMMAND, CR, ER, FIELD_TYPE, SERVER_STATUS

__all__ = [
    "CLIENT", "COMMAND", "CR", "ER", "FIELD_TYPE", "SERVER_STATUS",
    "CLIENT_OPTIONAL_RESULTSET_METADATA", "CLIENT_QUERY_ATTRIBUTES",
    "CLIENT_MULTI_FACTOR_AUTHENTICATION", "CLIENT_SSL_VERIFY_SERVER_CERT",
    "CLIENT_REMEMBER_OPTIONS", "CLIENT_MYSQL", "MARIADB_CLIENT_PROGRESS", "MARIADB_CLIENT_COM_MULTI",
    "MARIADB_CLIENT_STMT_BULK_OPERATIONS", "MARIADB_CLIENT_EXTENDED_METADATA", "MARIADB_CLIENT_CACHE_METADATA",
    "MARIADB_CLIENT_BULK_UNIT_RESULTS", "MARIADB_CAPABILITIES", "COM_RESET_CONNECTION", "COM_STMT_BULK_EXECUTE",
    "SERVER_QUERY_WAS_SLOW", "SERVER_PS_OUT_PARAMS",
    "SERVER_STATUS_IN_TRANS_READONLY", "SERVER_SESSION_STATE_CHANGED",
    "SESSION_TRACK", "ER_MALFORMED_PACKET", "ER_SECURE_TRANSPORT_REQUIRED", "sqlstate_for",
]

# Capability bits PyMySQL stops short of (it ends at DEPRECATE_EOF = 1 << 24).
CLIENT_OPTIONAL_RESULTSET_METADATA: Final = 1 << 25
CLIENT_ZSTD_COMPRESSION_ALGORITHM: Final = 1 << 26
CLIENT_QUERY_ATTRIBUTES: Final = 1 << 27
CLIENT_MULTI_FACTOR_AUTHENTICATION: Final = 1 << 28
CLIENT_CAPABILITY_EXTENSION: Final = 1 << 29
CLIENT_SSL_VERIFY_SERVER_CERT: Final = 1 << 30
CLIENT_REMEMBER_OPTIONS: Final = 1 << 31

# MariaDB's extended capabilities, as bits 32 and up of one 64-bit set. A MariaDB server (10.2+)
# clears CLIENT_MYSQL (bit 0, PyMySQL's LONG_PASSWORD) in its greeting and puts these, shifted down by
# 32, in the last 4 of the greeting's 10 reserved bytes; a client that clears CLIENT_MYSQL too sends
# the ones it wants in the last 4 of the HandshakeResponse's 23 reserved bytes.
CLIENT_MYSQL: Final = CLIENT.LONG_PASSWORD
MARIADB_CLIENT_PROGRESS: Final = 1 << 32
MARIADB_CLIENT_COM_MULTI: Final = 1 << 33
MARIADB_CLIENT_STMT_BULK_OPERATIONS: Final = 1 << 34  # COM_STMT_BULK_EXECUTE
MARIADB_CLIENT_EXTENDED_METADATA: Final = 1 << 35  # a type name / format block in each column definition
MARIADB_CLIENT_CACHE_METADATA: Final = 1 << 36  # executes may leave out column definitions sent before
MARIADB_CLIENT_BULK_UNIT_RESULTS: Final = 1 << 37  # (11.5+) a bulk execute may answer with a row per parameter set
MARIADB_CAPABILITIES: Final = 0xFFFFFFFF << 32

COM_RESET_CONNECTION: Final = 0x1F
COM_STMT_BULK_EXECUTE: Final = 0xFA  # MariaDB 10.2+

SERVER_QUERY_WAS_SLOW: Final = 0x0800
SERVER_PS_OUT_PARAMS: Final = 0x1000
SERVER_STATUS_IN_TRANS_READONLY: Final = 0x2000
SERVER_SESSION_STATE_CHANGED: Final = 0x4000


class SESSION_TRACK:
    """Types of the entries in an OK packet's session-state-change block."""

    SYSTEM_VARIABLES: Final = 0
    SCHEMA: Final = 1
    STATE_CHANGE: Final = 2
    GTIDS: Final = 3
    TRANSACTION_CHARACTERISTICS: Final = 4
    TRANSACTION_STATE: Final = 5


# MySQL 5.7+/MariaDB 10.1+ error numbers that PyMySQL's ER list lacks.
ER_MALFORMED_PACKET: Final = 1835
ER_SECURE_TRANSPORT_REQUIRED: Final = 3159  # MySQL's; MariaDB 10.11 answers such a login with 1045

# SQLSTATE for the error numbers the proxy itself sends; HY000 otherwise.
_SQLSTATE = {
    ER.ACCESS_DENIED_ERROR: "28000",
    ER.CON_COUNT_ERROR: "08004",
    ER.TOO_MANY_USER_CONNECTIONS: "42000",
    ER.UNKNOWN_COM_ERROR: "08S01",
    ER.HANDSHAKE_ERROR: "08S01",
    ER.NET_PACKET_TOO_LARGE: "08S01",
    ER.QUERY_INTERRUPTED: "70100",
    ER.SERVER_SHUTDOWN: "08S01",
    ER.NOT_SUPPORTED_AUTH_MODE: "08004",
    ER.NO_SUCH_THREAD: "HY000",
    ER.BAD_DB_ERROR: "42000",
    ER.WRONG_VALUE_FOR_VAR: "42000",
    ER.LOCK_WAIT_TIMEOUT: "HY000",
    ER_MALFORMED_PACKET: "HY000",
    1156: "08S01",  # ER_NET_PACKETS_OUT_OF_ORDER
    CR.CR_SERVER_LOST: "08S01",
    CR.CR_SERVER_GONE_ERROR: "08S01",
}


def sqlstate_for(errno: int) -> str:
    return _SQLSTATE.get(errno, "HY000")
