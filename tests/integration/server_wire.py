"""A raw-socket Gearman peer for server tests: send exact bytes, read exact replies, with deadlines."""

from __future__ import annotations

import socket
import time

from gearworks.protocol import REQ, AdminReplyReader, Decoder, Packet, PacketType, encode, reply_shape


class Wire:
    """One TCP (or Unix) connection to a job server, speaking bytes."""

    def __init__(self, port: int = 0, *, path: str | None = None, timeout: float = 5.0) -> None:
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.decoder = Decoder()
        self.pending: list[Packet] = []

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, ptype: PacketType, *args: bytes, magic: bytes = REQ) -> None:
        self.sock.sendall(encode(ptype, args, magic))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, count: int = 1) -> list[Packet]:
        """The next ``count`` packets (raises on timeout or EOF)."""
        deadline = time.monotonic() + self.timeout
        while len(self.pending) < count:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed after {self.pending!r}")
            for item in self.decoder.feed(data):
                assert isinstance(item, Packet)
                self.pending.append(item)
        out, self.pending = self.pending[:count], self.pending[count:]
        return out

    def request(self, ptype: PacketType, *args: bytes) -> Packet:
        self.send(ptype, *args)
        return self.recv(1)[0]

    def recv_raw_packets(self, count: int) -> bytes:
        """Exactly the bytes of the next ``count`` packets."""
        raw = bytearray()
        decoder = Decoder()
        got = 0
        deadline = time.monotonic() + self.timeout
        while got < count:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed after {bytes(raw)!r}")
            raw += data
            got += len(list(decoder.feed(data)))
        return bytes(raw)

    def admin(self, line: bytes) -> bytes:
        """Send one admin line (its ending included in ``line``) and return the raw reply bytes."""
        reader = AdminReplyReader()
        reader.expect(reply_shape(line))
        self.sock.sendall(line)
        deadline = time.monotonic() + self.timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed while waiting for the reply to {line!r}")
            replies = reader.feed(data)
            if replies:
                return replies[0].raw

    def silent(self, wait: float = 0.2) -> bool:
        """True if nothing arrives within ``wait`` seconds (and the connection is still open)."""
        if self.pending:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        if data:
            self.pending.extend(item for item in self.decoder.feed(data) if isinstance(item, Packet))
        return False

    def closed_by_peer(self, wait: float = 3.0) -> bytes:
        """Read until EOF (raises on timeout); returns what arrived before it."""
        self.sock.settimeout(wait)
        data = bytearray()
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(data)
            if not chunk:
                return bytes(data)
            data += chunk


def abandon(port: int, function: bytes, timeout: float = 5.0) -> bytes:
    """A worker grabs a job of ``function`` and disconnects without a result; returns the job's handle. Retries
    while the server has not yet requeued a job abandoned just before."""
    deadline = time.monotonic() + timeout
    while True:
        with Wire(port) as worker:
            worker.send(PacketType.CAN_DO, function)
            reply = worker.request(PacketType.GRAB_JOB)
        if reply.type is PacketType.JOB_ASSIGN:
            return reply.args[0]
        assert time.monotonic() < deadline, f"no job of {function!r} to grab"
        time.sleep(0.02)
