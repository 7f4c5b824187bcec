"""gearworks serve under hostile peers, over real sockets: too many connections, peers that never read, floods of
large jobs, half-sent packets and silent connections. The server must stay up, stay bounded in memory, log what it
refused, and keep serving everyone else."""

from __future__ import annotations

import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gearworks.protocol import REQ, RES, Packet, PacketType, encode
from tests.conftest import ServerFactory, require
from tests.integration.server_wire import Wire
from tests.servers import ServerProcess, rss_kib

T = PacketType
MiB = 1 << 20


def wait_for_log(server: ServerProcess, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := server.log()):
        assert time.monotonic() < deadline, f"{text!r} not logged: {log[-2000:]}"
        time.sleep(0.05)
    return log


def echo_ok(port: int, token: bytes = b"ping") -> bool:
    with Wire(port, timeout=5) as wire:
        return wire.request(T.ECHO_REQ, token) == Packet(T.ECHO_RES, (token,), RES)


def run_job(port: int, function: bytes = b"rev", payload: bytes = b"abc") -> bytes:
    """One foreground job, returning its result (a worker for ``function`` must be there)."""
    with Wire(port, timeout=10) as client:
        client.send(T.SUBMIT_JOB, function, b"", payload)
        while True:
            packet = client.recv()[0]
            if packet.type is T.WORK_COMPLETE:
                return packet.args[1]
            assert packet.type is T.JOB_CREATED, packet


class ReverseWorker:
    """A raw worker thread answering ``rev`` jobs until closed."""

    def __init__(self, port: int) -> None:
        self.wire = Wire(port, timeout=30)
        self.wire.send(T.CAN_DO, b"rev")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        wire = self.wire
        try:
            while not self.stop.is_set():
                job = wire.request(T.GRAB_JOB)
                if job.type is T.JOB_ASSIGN:
                    wire.send(T.WORK_COMPLETE, job.args[0], job.args[2][::-1])
                elif job.type is T.NO_JOB:
                    wire.send(T.PRE_SLEEP)
                    wire.recv()  # NOOP
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.wire.close()
        self.thread.join(5)


def test_connections_beyond_max_connections_are_refused_and_logged(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory("--max-connections", "4")
    held = [Wire(server.port) for _ in range(4)]
    try:
        assert held[0].request(T.ECHO_REQ, b"x").type is T.ECHO_RES
        with Wire(server.port) as extra:
            reply = extra.recv()[0]
            assert reply.type is T.ERROR
            assert reply.args[0] == b"SERVER_BUSY"
            extra.closed_by_peer()
        wait_for_log(server, "(--max-connections 4)")
        assert all(wire.request(T.ECHO_REQ, b"y").type is T.ECHO_RES for wire in held)
    finally:
        for wire in held:
            wire.close()
    deadline = time.monotonic() + 5
    while True:  # the slots are free again once the server has seen the closes
        with Wire(server.port) as again:
            again.send(T.ECHO_REQ, b"z")
            if again.recv()[0].type is T.ECHO_RES:
                break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_open_files_limit_is_raised_at_start_and_logged(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip(f"hard open-files limit {hard}: nothing to raise 1,024 to")
    log = tmp_path / "server.log"
    require("prlimit", "util-linux")
    serve = [sys.executable, "-m", "gearworks.cli.main", "serve", "-L", "127.0.0.1", "-p", "0", "-l", str(log)]
    proc = subprocess.Popen(["prlimit", f"--nofile=1024:{hard}", "--", *serve], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        assert f"open files limit raised from 1024 to {hard}" in log.read_text()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert [line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")] == [
            [str(hard), str(hard)]
        ]
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_thousand_idle_connections_jobs_still_run(gearworks_server: ServerProcess) -> None:
    port = gearworks_server.port
    worker = ReverseWorker(port)
    idle: list[socket.socket] = []
    try:
        assert run_job(port) == b"cba"
        before = rss_kib(gearworks_server.pid)
        idle.extend(socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2000))
        with Wire(port) as admin:  # every one of them is accepted and registered
            deadline = time.monotonic() + 10
            while admin.admin(b"workers\n").count(b"\n") < 2000:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        per_connection = (rss_kib(gearworks_server.pid) - before) * 1024 / len(idle)
        print(f"memory per idle connection: {per_connection:,.0f} bytes")
        started = time.monotonic()
        assert [run_job(port, payload=b"%d" % n) for n in range(200)] == [(b"%d" % n)[::-1] for n in range(200)]
        assert time.monotonic() - started < 20
        assert per_connection < 16 * 1024
    finally:
        for sock in idle:
            sock.close()
        worker.close()


def test_a_client_that_never_reads_cannot_grow_the_server(gearworks_server_factory: ServerFactory) -> None:
    """A foreground job streams 100,000 WORK_DATA to a client that never reads: the worker is throttled, the
    client dropped after --output-timeout, memory stays bounded and other clients are served throughout."""
    server = gearworks_server_factory("--max-output-bytes", "1MiB", "--output-timeout", "2")
    port = server.port
    before = rss_kib(server.pid)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    slow.sendall(encode(T.SUBMIT_JOB, [b"stream", b"", b"go"]))
    worker = Wire(port, timeout=30)
    peak = before
    try:
        worker.send(T.CAN_DO, b"stream")
        job = worker.request(T.GRAB_JOB)
        assert job.type is T.JOB_ASSIGN
        handle = job.args[0]
        chunk = encode(T.WORK_DATA, [handle, b"d" * 1000])
        done = threading.Event()

        def stream() -> None:
            try:
                for _ in range(100):
                    worker.send_raw(chunk * 1000)  # blocks while the server throttles this worker
                worker.send(T.WORK_COMPLETE, handle, b"end")
            finally:
                done.set()

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        while not done.wait(0.2):
            peak = max(peak, rss_kib(server.pid))
            assert echo_ok(port), "a healthy client was not served while the worker streamed"
            assert streamer.is_alive() or done.is_set()
        streamer.join(5)
        log = wait_for_log(server, "bytes of output unread")
        assert "--output-timeout" in log or "4 x --max-output-bytes" in log
        assert peak - before < 64 * 1024, f"RSS grew {(peak - before) / 1024:.0f} MiB"
        assert echo_ok(port)
    finally:
        slow.close()
        worker.close()


def test_a_thousand_status_replies_nobody_reads_stay_bounded(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory("--max-output-bytes", "256KiB", "--output-timeout", "2")
    port = server.port
    with Wire(port) as setup:
        for n in range(300):
            setup.admin(b"create function function-with-a-long-name-%04d\n" % n)
    before = rss_kib(server.pid)
    greedy = socket.socket()
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(("127.0.0.1", port))
    try:
        greedy.sendall(b"status\n" * 1000)  # about 12 MB of replies
        log = wait_for_log(server, "bytes of output unread", timeout=15)
        assert "closing" in log
        assert rss_kib(server.pid) - before < 48 * 1024
        assert echo_ok(port)
    finally:
        greedy.close()


def test_max_queued_bytes_refuses_a_flood_of_large_jobs(gearworks_server_factory: ServerFactory) -> None:
    """200 x 10 MiB background jobs from one client: those past the cap get ERROR QUEUE_ERROR, the server stays."""
    server = gearworks_server_factory("--max-queued-bytes", "64MiB")
    payload = b"j" * (10 * MiB)
    replies: list[Packet] = []
    with Wire(server.port, timeout=60) as client:

        def read() -> None:
            while len(replies) < 200:
                replies.extend(client.recv())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for _ in range(200):
            client.send(T.SUBMIT_JOB_BG, b"big", b"", payload)
        reader.join(120)
        assert len(replies) == 200
        created = [reply for reply in replies if reply.type is T.JOB_CREATED]
        refused = [reply for reply in replies if reply.type is T.ERROR]
        assert len(created) == 6
        assert len(created) + len(refused) == 200
        assert refused[0].args == (b"QUEUE_ERROR", b"Job queue memory cap reached (--max-queued-bytes)")
        assert rss_kib(server.pid) < 400 * 1024
        # The packet cap is read from the header: a declared 256 MiB + 1 body is refused before it is sent.
        client.send_raw(REQ + struct.pack(">II", T.SUBMIT_JOB_BG, 256 * MiB + 1))
        error = client.recv()[0]
        assert error.type is T.ERROR
        assert error.args[0] == b"INVALID_PACKET"
    assert echo_ok(server.port)
    assert server.proc is not None
    assert server.proc.poll() is None


@pytest.mark.parametrize("trickle", [False, True])
def test_a_half_sent_packet_times_out_and_others_are_unaffected(
    gearworks_server_factory: ServerFactory, trickle: bool
) -> None:
    server = gearworks_server_factory("--packet-timeout", "1")
    packet = encode(T.SUBMIT_JOB, [b"f", b"", b"x" * 100])
    with Wire(server.port) as slowloris, Wire(server.port) as healthy:
        slowloris.send_raw(packet[:20])
        started = time.monotonic()
        closed = False
        for n in range(40):  # with trickle, a byte every 0.2 s: busy, never complete
            assert healthy.request(T.ECHO_REQ, b"%d" % n).type is T.ECHO_RES
            try:
                if trickle:
                    slowloris.send_raw(packet[20 + n : 21 + n])
                closed = not slowloris.silent(0.2)
            except OSError:
                closed = True
            if closed:
                break
        assert closed
        assert 0.9 < time.monotonic() - started < 4
        assert healthy.request(T.ECHO_REQ, b"still").type is T.ECHO_RES
    wait_for_log(server, "(--packet-timeout)")


def test_idle_timeout_closes_silent_connections_only(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory("--idle-timeout", "1")
    with Wire(server.port) as silent, Wire(server.port) as chatty:
        for n in range(12):
            assert chatty.request(T.ECHO_REQ, b"%d" % n).type is T.ECHO_RES
            time.sleep(0.25)
        silent.closed_by_peer(wait=3)
        assert chatty.request(T.ECHO_REQ, b"end").type is T.ECHO_RES
    wait_for_log(server, "(--idle-timeout)")


def test_no_timeout_by_default_for_a_sleeping_worker(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as worker:
        worker.send(T.CAN_DO, b"later")
        worker.send(T.PRE_SLEEP)
        assert worker.silent(2.5)
        with Wire(gearworks_server.port) as client:
            client.request(T.SUBMIT_JOB_BG, b"later", b"", b"x")
        assert worker.recv()[0].type is T.NOOP
