"""A minimal Gearman worker speaking the raw protocol from a thread, for client tests that must not depend on
gearworks' own Worker. Handlers get a RawJob and return the result bytes (or call fail/exception themselves)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gearworks.protocol import Decoder, Packet, PacketType, encode

Handler = Callable[["RawJob"], bytes | None]


@dataclass
class RawJob:
    """One assigned job; the methods send WORK_* packets for it."""

    worker: RawWorker
    handle: bytes
    function: bytes
    unique: bytes
    workload: bytes
    finished: bool = False

    def data(self, data: bytes) -> None:
        self.worker.send(PacketType.WORK_DATA, self.handle, data)

    def warning(self, data: bytes) -> None:
        self.worker.send(PacketType.WORK_WARNING, self.handle, data)

    def status(self, numerator: int, denominator: int) -> None:
        self.worker.send(PacketType.WORK_STATUS, self.handle, str(numerator).encode(), str(denominator).encode())

    def fail(self) -> None:
        self.finished = True
        self.worker.send(PacketType.WORK_FAIL, self.handle)

    def exception(self, data: bytes) -> None:
        self.finished = True
        self.worker.send(PacketType.WORK_EXCEPTION, self.handle, data)


@dataclass
class RawWorker:
    """Registers ``handlers`` on the server at ``port`` and runs jobs one at a time until stopped.

    ``seen`` records (function, unique, workload) of every job in the order the server handed them out.
    """

    port: int
    handlers: dict[bytes, Handler]
    host: str = "127.0.0.1"
    seen: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, ptype: PacketType, *args: bytes) -> None:
        assert self._sock is not None
        with self._lock:
            self._sock.sendall(encode(ptype, args))

    def start(self) -> RawWorker:
        self._sock = socket.create_connection((self.host, self.port), timeout=10)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for name in self.handlers:
            self.send(PacketType.CAN_DO, name)
        self._thread = threading.Thread(target=self._run, name="raw-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> RawWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self._serve()
        except OSError:
            return  # the server went away (some tests kill it); the worker just ends

    def _serve(self) -> None:
        assert self._sock is not None
        decoder = Decoder()
        self._sock.settimeout(0.2)
        self.send(PacketType.GRAB_JOB_UNIQ)
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                return
            for packet in decoder.feed(data):
                assert isinstance(packet, Packet)
                self._handle(packet)

    def _handle(self, packet: Packet) -> None:
        if packet.type is PacketType.NO_JOB:
            self.send(PacketType.PRE_SLEEP)
        elif packet.type is PacketType.NOOP:
            self.send(PacketType.GRAB_JOB_UNIQ)
        elif packet.type is PacketType.JOB_ASSIGN_UNIQ:
            handle, function, unique, workload = packet.args
            self.seen.append((function, unique, workload))
            job = RawJob(self, handle, function, unique, workload)
            try:
                result = self.handlers[function](job)
            except Exception:
                result = None
                if not job.finished:
                    job.fail()
            if not job.finished:
                self.send(PacketType.WORK_COMPLETE, handle, result or b"")
            self.send(PacketType.GRAB_JOB_UNIQ)


def serve_echo(sock: socket.socket, function: bytes, stop: threading.Event) -> None:
    """The fastest raw echo worker, for benchmarks: each WORK_COMPLETE goes out with the next GRAB_JOB in one write,
    PRE_SLEEP on NO_JOB, a GRAB again on NOOP or when a read times out (a missed NOOP must not park it for good).
    Returns when ``stop`` is set or the server closes the connection; ``sock`` should have a read timeout."""
    grab = encode(PacketType.GRAB_JOB)
    sock.sendall(encode(PacketType.CAN_DO, [function]) + grab)
    decoder = Decoder()
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            sock.sendall(grab)
            continue
        if not data:
            return
        out = []
        for item in decoder.feed(data):
            assert isinstance(item, Packet)
            if item.type is PacketType.JOB_ASSIGN:
                out += [encode(PacketType.WORK_COMPLETE, [item.args[0], item.args[2]]), grab]
            elif item.type is PacketType.NO_JOB:
                out.append(encode(PacketType.PRE_SLEEP))
            elif item.type is PacketType.NOOP:
                out.append(grab)
        if out:
            sock.sendall(b"".join(out))
