"""Bounded fuzzing of a running gearworks server: random and mutated packets, cut at random points.

The server must stay up and keep answering a healthy connection throughout; the whole run is bounded in time.
"""

from __future__ import annotations

import os
import random
import socket
import time

from gearworks.protocol import RES, Packet, PacketType
from tests.fuzzing import mutated, valid_packet
from tests.integration.server_wire import Wire
from tests.servers import ServerProcess

T = PacketType
TIME_BUDGET = 20.0
MIN_PACKETS = 30_000


def drain(sock: socket.socket) -> bool:
    """Read whatever is there without blocking; False once the server closed the connection."""
    try:
        while True:
            if not sock.recv(1 << 16):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def fuzz_connection(port: int, rng: random.Random, packets: int) -> int:
    """Send ``packets`` valid packets with maybe one malformed one among them, cut at random points; returns
    how many were delivered up to and including the malformed one (the server drops the rest with the
    connection)."""
    parts = [valid_packet(rng) for _ in range(packets)]
    bad_at = len(parts)
    if rng.random() < 0.7:
        bad_at = rng.randrange(len(parts) + 1)
        parts.insert(bad_at, mutated(rng))
    ends = []
    total = 0
    for part in parts:
        total += len(part)
        ends.append(total)
    stream = b"".join(parts)
    pos = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setblocking(False)
        deadline = time.monotonic() + 2
        while pos < len(stream) and time.monotonic() < deadline:
            cut = min(len(stream), pos + rng.choice((1, 7, 100, 1000, 65536)))
            try:
                pos += sock.send(stream[pos:cut])
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break  # closed on bad input, as it should be
            if not drain(sock):
                break
    return sum(1 for end in ends[: bad_at + 1] if end <= pos)


def test_random_and_mutated_packets_never_take_the_server_down(gearworks_server: ServerProcess) -> None:
    seed = int(os.environ.get("GEARWORKS_FUZZ_SEED", "4730"))
    rng = random.Random(seed)
    sent = 0
    started = time.monotonic()
    with Wire(gearworks_server.port) as healthy:
        while sent < 100_000 and time.monotonic() - started < TIME_BUDGET:
            sent += fuzz_connection(gearworks_server.port, rng, rng.choice((1, 5, 50, 200)))
            if rng.random() < 0.1:
                token = b"%d" % sent
                assert healthy.request(T.ECHO_REQ, token) == Packet(T.ECHO_RES, (token,), RES), f"seed {seed}"
        assert sent >= MIN_PACKETS, f"only {sent} packets in {TIME_BUDGET}s"
        assert healthy.request(T.ECHO_REQ, b"end") == Packet(T.ECHO_RES, (b"end",), RES)
        assert healthy.admin(b"version\n").startswith(b"OK ")
    assert gearworks_server.proc is not None
    assert gearworks_server.proc.poll() is None
    assert "Traceback" not in gearworks_server.log()
