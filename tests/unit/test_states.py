# The state tables (core/states.py): the moves each connection's set_state() allows (each member's
# `allowed`) are exactly the rows of CLIENT_MOVES and BACKEND_MOVES, and set_state() raises on any other.
from __future__ import annotations

import itertools

import pytest

from mysqlpool_proxy.core.states import (
    BACKEND_MOVES,
    CLIENT_MOVES,
    BackendState,
    ClientState,
    IllegalTransition,
)
from tests.fakes import FakeClient, start_proxy, virtual_time


@pytest.mark.parametrize("current, new", list(itertools.product(ClientState, ClientState)))
def test_client_moves_are_the_table(current, new):
    assert (new in current.allowed) is (new in CLIENT_MOVES[current])


@pytest.mark.parametrize("current, new", list(itertools.product(BackendState, BackendState)))
def test_backend_moves_are_the_table(current, new):
    assert (new in current.allowed) is (new in BACKEND_MOVES[current])


def test_every_state_can_close_and_nothing_leaves_closed():
    assert all(ClientState.CLOSED in row for state, row in CLIENT_MOVES.items() if state is not ClientState.CLOSED)
    assert all(BackendState.CLOSED in row for state, row in BACKEND_MOVES.items() if state is not BackendState.CLOSED)
    assert CLIENT_MOVES[ClientState.CLOSED] == () and BACKEND_MOVES[BackendState.CLOSED] == ()


@virtual_time
async def test_a_connection_refuses_a_move_outside_the_table():
    proxy = await start_proxy()
    client = await FakeClient(proxy).connect()
    conn = client.conn
    assert conn.state is ClientState.READY
    with pytest.raises(IllegalTransition, match="illegal transition ready -> handshake"):
        conn.set_state(ClientState.HANDSHAKE)
    assert conn.state is ClientState.READY  # unchanged
    conn.set_state(ClientState.LOCAL)  # in the table
    assert conn.state is ClientState.LOCAL
    conn.set_state(ClientState.READY)
    client.quit()
    await proxy.stop(0)
