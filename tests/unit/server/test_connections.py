"""The asyncio driver around the board, over loopback sockets in one process: what a closed connection leaves."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import weakref
from collections.abc import Iterator

import pytest

from gearworks.protocol import Decoder, Packet, PacketType, encode
from gearworks.server.admin import AdminCommands
from gearworks.server.board import Board
from gearworks.server.connections import Connection, Hub
from gearworks.server.jobs import HandleFactory

T = PacketType


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Only reference counting frees objects while the test runs (what a busy server effectively gets)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _accept(hub: Hub) -> tuple[Connection, socket.socket]:
    """A loopback TCP connection whose server side is a ``Connection`` of ``hub``; returns it and the client end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    theirs.setblocking(False)
    _, connection = await asyncio.get_running_loop().connect_accepted_socket(hub.connection, ours)
    assert isinstance(connection, Connection)
    return connection, theirs


async def _read_packet(sock: socket.socket) -> Packet:
    decoder = Decoder()
    loop = asyncio.get_running_loop()
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        assert data, "server closed the connection"
        for item in decoder.feed(data):
            assert isinstance(item, Packet)
            return item


async def _closed_connections_leave_nothing() -> None:
    board = Board(handles=HandleFactory(b"H:t"))
    hub = Hub(board, AdminCommands(board, version=b"test"), on_action=lambda action: None)
    loop = asyncio.get_running_loop()
    client, client_sock = await _accept(hub)
    worker, worker_sock = await _accept(hub)
    # The client waits on a foreground job the worker holds; the worker leaves half a packet behind.
    await loop.sock_sendall(client_sock, encode(T.SUBMIT_JOB, (b"f", b"", b"x")))
    assert (await _read_packet(client_sock)).type is T.JOB_CREATED
    await loop.sock_sendall(worker_sock, encode(T.CAN_DO, (b"f",)) + encode(T.GRAB_JOB))
    assert (await _read_packet(worker_sock)).type is T.JOB_ASSIGN
    await loop.sock_sendall(worker_sock, encode(T.WORK_DATA, (b"H:t:1", b"y" * 100_000))[:50_000])
    refs = [weakref.ref(each) for each in (client, worker, client.peer, worker.peer)]
    del client, worker
    for sock in (worker_sock, client_sock):
        # A reset, not a FIN: a FIN could be a half-close, after which the waiting client is kept for its result.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    for _ in range(200):
        if not hub.connections:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # the transports drop their protocols in the callback after connection_lost
    assert not hub.connections
    assert not board.peers
    assert not board.jobs
    assert [ref() for ref in refs] == [None] * 4


def test_closed_connection_is_freed_without_gc(no_gc: None) -> None:
    asyncio.run(_closed_connections_leave_nothing())


def _loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


async def _paused_hub_holds_new_connections() -> tuple[int, PacketType]:
    board = Board(handles=HandleFactory(b"H:t"))
    hub = Hub(board, AdminCommands(board, version=b"test"), on_action=lambda action: None)
    loop = asyncio.get_running_loop()
    hub._pause_reading(True)  # the durable queue's back-pressure, as when its backlog is over MAX_WRITE_BACKLOG
    _, sock = await _accept(hub)
    await loop.sock_sendall(sock, encode(T.SUBMIT_JOB_BG, (b"f", b"", b"x")))
    await asyncio.sleep(0.2)
    held = len(board.jobs)
    hub._pause_reading(False)
    reply = await _read_packet(sock)
    sock.close()
    hub.close()
    return held, reply.type


@pytest.mark.parametrize("loop_name", _loops())
def test_a_connection_made_while_reading_is_paused_waits_on_both_loops(loop_name: str) -> None:
    """uvloop starts reading after ``connection_made`` whatever was asked there (issue #19 item 3)."""
    factory = asyncio.new_event_loop
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(_paused_hub_holds_new_connections()) == (0, T.JOB_CREATED)
