# What the faked server is: a MariaDB 10.11 as the proxy's backends see it. Its
# version and capabilities, the collations it lists, its global variables (what
# a new or reset session starts with), the session trackers the proxy's setup
# turns on, and the globals the proxy's setup query reads. The server, its SQL
# and the opener all take these from here.
from __future__ import annotations

from mysqlpool_proxy.constants import CLIENT

SERVER_VERSION = "5.5.5-10.11.19-MariaDB"

# id -> (charset, collation, is the charset's default)
COLLATIONS = {45: ("utf8mb4", "utf8mb4_general_ci", True), 8: ("latin1", "latin1_swedish_ci", True),
              224: ("utf8mb4", "utf8mb4_unicode_ci", False), 35: ("ucs2", "ucs2_general_ci", True),
              54: ("utf16", "utf16_general_ci", True)}
DEFAULT_COLLATION = {b"utf8mb4": b"utf8mb4_general_ci", b"latin1": b"latin1_swedish_ci",
                     b"utf8mb3": b"utf8mb3_general_ci", b"utf8": b"utf8mb3_general_ci", b"binary": b"binary",
                     b"ascii": b"ascii_general_ci"}
COLLATION_CHARSET = {b"utf8mb4_general_ci": b"utf8mb4", b"utf8mb4_unicode_ci": b"utf8mb4",
                     b"utf8mb4_bin": b"utf8mb4", b"latin1_swedish_ci": b"latin1", b"latin1_general_ci": b"latin1",
                     b"latin1_bin": b"latin1", b"utf8mb3_general_ci": b"utf8mb3", b"binary": b"binary",
                     b"ascii_general_ci": b"ascii"}

# The server's global values: what a fresh session (or a reset one) starts with.
GLOBALS: dict[bytes, bytes] = {
    b"autocommit": b"ON",
    b"character_set_client": b"utf8mb4",
    b"character_set_connection": b"utf8mb4",
    b"character_set_results": b"utf8mb4",
    b"collation_connection": b"utf8mb4_general_ci",
    b"sql_mode": b"STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
    b"time_zone": b"SYSTEM",
    b"wait_timeout": b"28800",
    b"interactive_timeout": b"28800",
    b"net_write_timeout": b"60",
    b"transaction_isolation": b"REPEATABLE-READ",
    b"tx_isolation": b"REPEATABLE-READ",
    b"max_statement_time": b"0.000000",
    b"sql_select_limit": b"18446744073709551615",
    b"foreign_key_checks": b"ON",
    b"unique_checks": b"ON",
    b"group_concat_max_len": b"1048576",
    b"lc_time_names": b"en_US",
    b"div_precision_increment": b"4",
    b"session_track_system_variables":
        b"autocommit,character_set_client,character_set_connection,character_set_results,redirect_url,time_zone",
    b"session_track_schema": b"ON",
    b"session_track_state_change": b"OFF",
    b"session_track_transaction_info": b"OFF",
    b"session_track_gtids": b"OFF",
}
BOOLEAN_VARS = {b"autocommit", b"foreign_key_checks", b"unique_checks", b"session_track_schema",
                b"session_track_state_change"}
# The globals the proxy's setup query reads (backend_adapter.SERVER_GLOBALS), as a MariaDB 10.11 has them.
SERVER_GLOBALS = {
    b"session_track_system_variables": b"autocommit,character_set_client,character_set_connection,"
                                       b"character_set_results,time_zone",
    b"session_track_schema": b"1", b"session_track_state_change": b"0", b"session_track_transaction_info": b"OFF",
    b"max_allowed_packet": b"16777216", b"max_prepared_stmt_count": b"16382", b"net_write_timeout": b"60",
}

# What the proxy's SETUP_SQL leaves on every backend it opens.
SETUP_TRACKERS = {b"session_track_system_variables": b"*", b"session_track_schema": b"ON",
                  b"session_track_state_change": b"ON", b"session_track_transaction_info": b"CHARACTERISTICS"}

# What MariaDB 10.11 announces (CLIENT_MYSQL, bit 0, clear; no TLS configured), its extended
# capabilities (PROGRESS, STMT_BULK_OPERATIONS, EXTENDED_METADATA, CACHE_METADATA) as bits 32 and up.
SERVER_EXTENDED_CAPABILITIES = 0x1D << 32
SERVER_CAPABILITIES = SERVER_EXTENDED_CAPABILITIES | (
    CLIENT.FOUND_ROWS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.NO_SCHEMA | CLIENT.COMPRESS | CLIENT.ODBC
    | CLIENT.LOCAL_FILES | CLIENT.IGNORE_SPACE | CLIENT.PROTOCOL_41 | CLIENT.INTERACTIVE | CLIENT.IGNORE_SIGPIPE
    | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF
)
