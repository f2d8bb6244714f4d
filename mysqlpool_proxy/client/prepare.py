"""What a client's command becomes before a server sees it: the Command in flight and the packet as the
server must get it, or an answer from the proxy itself.

`prepare_command()` runs for every command the client connection relays
(`ClientConnection._relay_command()`), on the hot path: a plain SELECT goes
through one first-three-letters check, `analyze()` and the Command. On the
way, what needs no server is answered here (through local.py): a COMMIT /
ROLLBACK / SET autocommit with nothing open, `SET NAMES`, a lone KILL.
What the server must get differently is rewritten: query attributes taken
out (no backend takes them), the connection id a statement reads replaced
by the proxy's, a statement id by the backend's (statements.py).
"""

from __future__ import annotations

from typing import Final

from ..constants import CLIENT_QUERY_ATTRIBUTES, COM_STMT_BULK_EXECUTE, COMMAND
from ..core.client_session import STMT_ID_COMMANDS, Command
from ..errors import ProxyError
from ..protocol.attributes import AttributesRefused, plain_query
from ..protocol.command import CommandSpec
from ..protocol.framing import Packet, same_frames, with_payload
from ..protocol.sql import analyze, parse_set_names, replace_connection_id
from ..protocol.transaction import NOOP_MAX_LENGTH, noop_transaction_command
from . import local, statements
from .host import Client

__all__ = ["prepare_command"]


def _any_case(*words: bytes) -> frozenset[bytes]:
    """Every spelling of `words` in upper and lower case letters."""
    spellings = {b""}
    for i in range(len(words[0])):
        spellings = {s + bytes((c,)) for s in spellings for w in words for c in (w[i], w[i] ^ 0x20)}
    return frozenset(s for s in spellings if s.lower() in words)


# The first three letters of what the proxy may answer itself: COMMIT, ROLLBACK, SET autocommit, and
# SET NAMES. A SELECT goes straight on, without a look for them.
_NOOP_START: Final = _any_case(b"com", b"rol", b"set")
_SET_START: Final = _any_case(b"set")
# PyMySQL's COMMAND is a module: `COMMAND.COM_QUERY` would be two lookups by name per command.
_COM_QUERY: Final = COMMAND.COM_QUERY
_COM_STMT_PREPARE: Final = COMMAND.COM_STMT_PREPARE
_COM_STMT_EXECUTE: Final = COMMAND.COM_STMT_EXECUTE


def prepare_command(client: Client, spec: CommandSpec, pkt: Packet) -> tuple[Command, Packet] | None:
    """The Command for `pkt` (its effects, SQL, statement), with the packet as the server must get
    it; None when the proxy answered it itself (no-op COMMIT, SET NAMES, KILL, a statement command
    the server needs not see)."""
    payload = pkt.payload
    code = spec.code
    session = client.session
    effects = None
    if code == _COM_QUERY:
        if client.capabilities & CLIENT_QUERY_ATTRIBUTES:
            # No backend takes attributes (README "Query attributes"): the server gets the SQL alone.
            try:
                pkt = with_payload(pkt, same_frames(pkt, plain_query(payload), b" "))
            except AttributesRefused as exc:
                client.send_error(pkt.last_seq, ProxyError(exc.errno, str(exc)))
                return None
            payload = pkt.payload
        start = payload[1:4]
        holds_none = client.lease.backend is None
        if holds_none and len(payload) <= NOOP_MAX_LENGTH and start in _NOOP_START \
                and not session.holds_state():  # COMMIT / ROLLBACK / SET autocommit with nothing open?
            noop = noop_transaction_command(payload[1:])
            if noop is not None and local.noop_transaction(client, pkt, noop):
                return None
        if holds_none and len(payload) > 9 and start in _SET_START:  # SET NAMES?
            names = parse_set_names(payload[1:])
            if names is not None and local.set_names(client, pkt, *names):
                return None
        quoting = session.quoting
        effects = analyze(payload[1:], quoting)
        if effects.kill is not None:
            killed = local.kill_statements(client, pkt)
            if killed is None:
                return None  # a lone KILL, answered by the proxy
            pkt, payload = killed, killed.payload
        if effects.reads_connection_id:
            # The id a client sees is the proxy's (KILL takes it too), not a backend's.
            pkt = with_payload(pkt, b"\x03" + replace_connection_id(payload[1:], client.id, quoting))
    command = Command(spec, effects=effects, seq=pkt.last_seq)
    if code in STMT_ID_COMMANDS:
        found = statements.lookup(client, code, pkt)
        if found is None:
            return None
        stmt, pkt = found
        command.stmt, command.stmt_id = stmt, stmt.id
        if code in (_COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE):
            command.effects, command.sql = stmt.effects, stmt.sql  # executing it does what its SQL does
    elif code == _COM_STMT_PREPARE:
        command.stmt_id = session.new_statement_id()
        quoting = session.quoting
        if analyze(payload[1:], quoting).reads_connection_id:
            pkt = with_payload(pkt, b"\x16" + replace_connection_id(payload[1:], client.id, quoting))
        command.sql = pkt.payload[1:]
    elif effects is not None:
        command.sql = pkt.payload[1:]
    return command, pkt
