# Fakes for the middle test layer: pool, session and relay logic with no
# sockets and no sleeping (in the spirit of uvicorn's MockTransport/MockLoop).
# One module per thing faked; tests import from here (`from tests.fakes import X`).
#
# * loop.py: VirtualClockLoop, a real event loop whose clock jumps to the next
#   timer when it would wait; run(), @virtual_time, advance(), settle().
# * transport.py: FakeTransport, an asyncio.Transport that records writes and
#   lets a test play the peer (deliver bytes, close, stall the write buffer).
# * server.py: FakeMySQLServer, the server side of one backend connection at
#   the packet level: answers roughly as MariaDB 10.11 would, records the
#   commands, can answer late, in chunks or as scripted. Its SQL: sql.py (the
#   tokenizer) and statements.py (the interpreter); its replies: packets.py
#   (packet builders) and replies.py (scripted replies, the command log).
# * mariadb.py: what the faked server is (version, capabilities, collations,
#   global variables, the trackers the proxy's setup turns on).
# * opener.py: FakeOpener / fake_opener(), the backend opener Pool and Proxy
#   take; each call wires a FakeTransport to a new FakeMySQLServer.
# * client.py: FakeClient, a MySQL client against a ClientConnection over a
#   FakeTransport (handshake, commands, parsed replies: Response, Result).
# * proxy.py: proxy_config() and start_proxy(), a Proxy on the fakes.
from tests.fakes.client import DEFAULT_CLIENT_CAPS, ConnectionClosed, FakeClient, Response, Result
from tests.fakes.loop import VirtualClockLoop, advance, run, settle, virtual_time
from tests.fakes.mariadb import (
    COLLATIONS,
    GLOBALS,
    SERVER_CAPABILITIES,
    SERVER_GLOBALS,
    SERVER_VERSION,
    SETUP_TRACKERS,
)
from tests.fakes.opener import Attempt, FakeOpener, fake_opener
from tests.fakes.packets import (
    ANSI_QUOTES,
    AUTOCOMMIT,
    CURSOR_EXISTS,
    IN_TRANS,
    LAST_ROW_SENT,
    MORE_RESULTS,
    NO_BACKSLASH_ESCAPES,
    T_LONGLONG,
    T_VAR_STRING,
    binary_row,
    column_def,
    state_block,
    text_row,
)
from tests.fakes.proxy import ReadinessSet, proxy_config, start_proxy
from tests.fakes.replies import Command, Err, Ok, Rows
from tests.fakes.server import FakeMySQLServer
from tests.fakes.transport import FakeTransport

__all__ = [
    "VirtualClockLoop", "run", "virtual_time", "advance", "settle",
    "FakeTransport",
    "FakeMySQLServer", "Command", "Rows", "Ok", "Err",
    "column_def", "text_row", "binary_row", "state_block", "T_LONGLONG", "T_VAR_STRING",
    "IN_TRANS", "AUTOCOMMIT", "MORE_RESULTS", "CURSOR_EXISTS", "LAST_ROW_SENT", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES",
    "SERVER_VERSION", "SERVER_CAPABILITIES", "COLLATIONS", "GLOBALS", "SERVER_GLOBALS", "SETUP_TRACKERS",
    "FakeOpener", "fake_opener", "Attempt",
    "FakeClient", "Response", "Result", "ConnectionClosed", "DEFAULT_CLIENT_CAPS",
    "proxy_config", "start_proxy", "ReadinessSet",
]
