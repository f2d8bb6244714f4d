"""The states of a client connection and of a backend connection, and the moves allowed between them.

Each connection changes state in one method (ClientConnection.set_state,
BackendConnection.set_state), which checks the move against the table
(`state.allowed`, each member's row of it): a move that is not there raises
IllegalTransition, a bug caught where it happens. Every state
can move to CLOSED, and nothing leaves CLOSED (closing twice is not a move:
close() returns early instead).

Client states:

    GREETING   accepted; waiting to learn the server's identity to greet it
    HANDSHAKE  greeted; authenticating (protocol/handshake.py)
    LOCAL      the proxy works on the client's behalf and its commands wait:
               the schema check of a login, COM_CHANGE_USER, COM_RESET_CONNECTION,
               KILL, the hidden statements after a response, keepalives
    READY      between commands; holds a backend only if it must
    CHECKOUT   a command waits for a backend, or for one to be brought to the
               client's session state
    ACTIVE     a command is at the backend; its response is being relayed
    INFILE     the server asked for a LOCAL INFILE; the client's file is relayed

Backend states:

    IDLE       in its pool; nobody's. A byte from the server means it is closing.
    RESERVED   a client's (or the pool's, for a ping) between commands
    BUSY       a client's command is out; the response is relayed to it
    INTERNAL   the proxy's own command is out; the response is read here
"""

from __future__ import annotations

import enum

__all__ = ["ClientState", "BackendState", "IllegalTransition", "CLIENT_MOVES", "BACKEND_MOVES"]


class IllegalTransition(Exception):
    """A state change the table does not allow: a bug. (An Exception, not a RuntimeError: mypyc
    compiles no subclass of RuntimeError.)"""

    def __init__(self, who: object, current: enum.Enum, new: enum.Enum):
        super().__init__(f"{who!r}: illegal transition {current.value} -> {new.value}")


class ClientState(enum.Enum):
    GREETING = "greeting"
    HANDSHAKE = "handshake"
    LOCAL = "local"
    READY = "ready"
    CHECKOUT = "checkout"
    ACTIVE = "active"
    INFILE = "infile"
    CLOSED = "closed"

    allowed: tuple[ClientState, ...]  # its row of CLIENT_MOVES (set below)


class BackendState(enum.Enum):
    IDLE = "idle"
    RESERVED = "reserved"
    BUSY = "busy"
    INTERNAL = "internal"
    CLOSED = "closed"

    allowed: tuple[BackendState, ...]  # its row of BACKEND_MOVES (set below)


_C, _B = ClientState, BackendState
CLIENT_MOVES: dict[ClientState, tuple[ClientState, ...]] = {
    _C.GREETING: (_C.HANDSHAKE, _C.CLOSED),
    _C.HANDSHAKE: (_C.READY, _C.LOCAL, _C.CLOSED),  # LOCAL: the login waits for a backend (schema check)
    _C.LOCAL: (_C.READY, _C.CLOSED),
    _C.READY: (_C.CHECKOUT, _C.ACTIVE, _C.LOCAL, _C.CLOSED),
    _C.CHECKOUT: (_C.ACTIVE, _C.READY, _C.CLOSED),
    _C.ACTIVE: (_C.READY, _C.INFILE, _C.LOCAL, _C.CLOSED),  # LOCAL: hidden statements after the response
    _C.INFILE: (_C.ACTIVE, _C.CLOSED),
    _C.CLOSED: (),
}
BACKEND_MOVES: dict[BackendState, tuple[BackendState, ...]] = {
    _B.IDLE: (_B.RESERVED, _B.CLOSED),
    _B.RESERVED: (_B.BUSY, _B.INTERNAL, _B.IDLE, _B.CLOSED),
    _B.BUSY: (_B.RESERVED, _B.CLOSED),
    _B.INTERNAL: (_B.RESERVED, _B.CLOSED),
    _B.CLOSED: (),
}


# Each member carries its row (a tuple of a few members: membership is tested by
# identity, no hashing, on the hot path).
for _client_state, _client_row in CLIENT_MOVES.items():
    _client_state.allowed = _client_row
for _backend_state, _backend_row in BACKEND_MOVES.items():
    _backend_state.allowed = _backend_row
