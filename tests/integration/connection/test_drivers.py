"""Both connection drivers against the real C gearmand: packets out and back, errors mapped to ours."""

from __future__ import annotations

import asyncio

import pytest

from gearworks.connection import ConnectOptions, ServerAddress
from gearworks.connection.aio import open_connection
from gearworks.connection.blocking import BlockingConnection
from gearworks.errors import ConnectionLost
from gearworks.protocol import RES, Decoder, Packet, PacketType, encode, encode_parts
from tests.servers import ServerProcess, free_port


class Collector:
    """A receiver that decodes packets and records why the connection ended."""

    def __init__(self) -> None:
        self.decoder = Decoder()
        self.packets: list[Packet] = []
        self.lost: Exception | None = None
        self.changed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.packets.extend(item for item in self.decoder.feed(data) if isinstance(item, Packet))
        self.changed.set()

    def connection_lost(self, exc: Exception) -> None:
        self.lost = exc
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.packets) < count and self.lost is None:
                self.changed.clear()
                await self.changed.wait()


def address(server: ServerProcess) -> ServerAddress:
    return ServerAddress("127.0.0.1", server.port)


def test_async_connection_batches_writes_and_receives_replies(gearmand: ServerProcess) -> None:
    async def run() -> None:
        collector = Collector()
        conn = await open_connection(address(gearmand), collector, ConnectOptions())
        payload = b"\0" * (2 * 1024 * 1024)
        for i in range(100):
            conn.write([encode(PacketType.ECHO_REQ, [str(i).encode()])])
        conn.write(encode_parts(PacketType.ECHO_REQ, [payload]))
        await collector.wait_for(101)
        assert [p.args[0] for p in collector.packets[:100]] == [str(i).encode() for i in range(100)]
        assert collector.packets[100] == Packet(PacketType.ECHO_RES, (payload,), RES)
        conn.close()
        await collector.wait_for(10**9)  # returns once the connection is lost
        assert isinstance(collector.lost, ConnectionLost)
        with pytest.raises(ConnectionLost, match="is closed"):
            conn.write([b""])

    asyncio.run(run())


def test_async_connect_refused_is_connection_lost() -> None:
    async def run() -> None:
        where = ServerAddress("127.0.0.1", free_port())
        with pytest.raises(ConnectionLost, match=f"cannot connect to {where}"):
            await open_connection(where, Collector(), ConnectOptions(connect_timeout=2))

    asyncio.run(run())


def test_blocking_connection_round_trip_and_server_close(gearmand: ServerProcess) -> None:
    conn = BlockingConnection.connect(address(gearmand), ConnectOptions())
    decoder = Decoder()
    conn.send([encode(PacketType.ECHO_REQ, [b"a\0b"]), encode(PacketType.ECHO_REQ, [b"c"])])
    got: list[Packet | bytes] = []
    while len(got) < 2:
        got.extend(decoder.feed(conn.recv(5)))
    assert got == [Packet(PacketType.ECHO_RES, (b"a\0b",), RES), Packet(PacketType.ECHO_RES, (b"c",), RES)]
    assert conn.recv(0.05) == b""  # nothing more: a timeout is not an error
    gearmand.stop()
    with pytest.raises(ConnectionLost, match="closed by the server"):
        conn.recv(5)
    assert conn.closed


def test_blocking_connect_refused_is_connection_lost() -> None:
    where = ServerAddress("127.0.0.1", free_port())
    with pytest.raises(ConnectionLost, match="cannot connect to"):
        BlockingConnection.connect(where, ConnectOptions(connect_timeout=2))
