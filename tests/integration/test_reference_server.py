"""The protocol core against the real C gearmand: what we encode it understands, what it sends we decode."""

from __future__ import annotations

import socket

from gearworks.protocol import RES, Decoder, Packet, PacketType, encode
from tests.servers import ServerProcess


def exchange(server: ServerProcess, wire: bytes, replies: int) -> list[Packet | bytes]:
    decoder = Decoder(text=True)
    out: list[Packet | bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(wire)
        while len(out) < replies:
            data = sock.recv(65536)
            assert data, "gearmand closed the connection"
            out.extend(decoder.feed(data))
    return out


def test_echo_with_nuls_round_trips_through_gearmand(gearmand: ServerProcess) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB with NULs
    (reply,) = exchange(gearmand, encode(PacketType.ECHO_REQ, [payload]), 1)
    assert reply == Packet(PacketType.ECHO_RES, (payload,), RES)


def test_submit_status_and_errors_decode_from_gearmand(gearmand: ServerProcess) -> None:
    wire = (
        encode(PacketType.SUBMIT_JOB_BG, [b"f", b"u1", b"data"])
        + encode(PacketType.GET_STATUS_UNIQUE, [b"u1"])
        + encode(PacketType.OPTION_REQ, [b"nope"])
        + encode(PacketType.ALL_YOURS)
    )
    created, status, unknown_option, invalid = exchange(gearmand, wire, 4)
    assert isinstance(created, Packet)
    assert created.type is PacketType.JOB_CREATED
    assert created.args[0].startswith(b"H:")
    assert status == Packet(PacketType.STATUS_RES_UNIQUE, (b"u1", b"1", b"0", b"0", b"0", b"0"), RES)
    assert unknown_option == Packet(
        PacketType.ERROR, (b"UNKNOWN_OPTION", b"Server does not recognize given option"), RES
    )
    assert invalid == Packet(PacketType.ERROR, (b"INVALID_COMMAND", b"Command not expected"), RES)
