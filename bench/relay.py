# The benchmark's floor: a bare byte relay on uvloop, what any Python proxy
# pays to move a query's bytes (bench/floor.py runs it as a leg of its own).
#
#   python -m bench.relay --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT
#
# Every accepted client gets one backend connection of its own, opened when
# the client connects and closed with it. No parsing, no pooling, no state:
# data_received on one side is transport.write on the other. Flow control
# both ways: when one side's write buffer passes its high-water mark, the
# other side stops reading until it drains. The client is not read until its
# backend is connected (the server speaks first anyway).
"""A bare uvloop TCP relay: one backend connection per client, bytes only."""

from __future__ import annotations

import argparse
import asyncio
import signal

CONNECTING: set[asyncio.Task] = set()  # backend connects in progress (a task needs a strong reference)


class Side(asyncio.Protocol):
    """One end of a relayed connection: what it receives goes to `peer`'s transport."""

    __slots__ = ("transport", "peer")

    def __init__(self, peer: Side | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close this side; connection_lost closes the other

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()  # after what it still has to write


class ClientSide(Side):
    """The client's end: opens its backend on connect and is read only once it is there."""

    __slots__ = ("backend",)

    def __init__(self, backend: tuple[str, int]) -> None:
        super().__init__()
        self.backend = backend

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self.connect())
        CONNECTING.add(task)
        task.add_done_callback(CONNECTING.discard)

    async def connect(self) -> None:
        server = Side(peer=self)
        try:
            await asyncio.get_running_loop().create_connection(lambda: server, *self.backend)
        except OSError:
            self.transport.close()
            return
        if self.transport.is_closing():  # the client left meanwhile
            server.transport.close()
            return
        self.peer = server
        self.transport.resume_reading()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(listen: tuple[str, int], backend: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(lambda: ClientSide(backend), *listen, backlog=1024, reuse_address=True)
    async with server:
        await stop


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", type=address, required=True, metavar="HOST:PORT")
    ap.add_argument("--backend", type=address, required=True, metavar="HOST:PORT")
    opts = ap.parse_args(argv)
    import uvloop

    uvloop.run(serve(opts.listen, opts.backend))


if __name__ == "__main__":
    main()
