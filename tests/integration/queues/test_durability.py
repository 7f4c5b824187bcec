"""gearworks serve with each durable queue, killed with SIGKILL mid-storm: every background job whose JOB_CREATED
reached its client runs after a restart (checked by the client's own record), unique keys still coalesce, epoch
jobs still wait for their time, and a backend that goes down gives clients errors, not silent drops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearworks.admin import Admin, DeadLetter
from gearworks.protocol import RES, Decoder, Packet, PacketType, encode
from tests.integration.server_wire import abandon
from tests.servers import ServerProcess, gearworks_process


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
    elif request.param == "redis":
        redis: ServerProcess = request.getfixturevalue("redis_server")
        subprocess.run(["redis-cli", "-p", str(redis.port), "flushall"], check=True, capture_output=True)
        yield f"redis://127.0.0.1:{redis.port}/0"
    else:
        url: str = request.getfixturevalue("postgres_url")
        yield url
        _drop_table(url)


def _drop_table(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS gearworks_jobs, gearworks_jobs_dead")


class Storm:
    """Pipelines SUBMIT_JOB_BG packets (unique keys ``<prefix><n>``, ``s<n>`` by default) and records which ones
    were acknowledged."""

    def __init__(self, port: int, prefix: bytes = b"s") -> None:
        self.prefix = prefix
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.acked: list[bytes] = []
        self.errors: list[bytes] = []
        self.sent: list[bytes] = []
        self.done = threading.Event()
        self.kill_at: int | None = None
        """When this many acknowledgements have arrived, ``on_ack`` runs on the reader thread at once."""
        self.on_ack: Callable[[], None] = lambda: None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        decoder = Decoder()
        try:
            while data := self.sock.recv(65536):
                for packet in decoder.feed(data):
                    assert isinstance(packet, Packet)
                    unique = self.sent[len(self.acked) + len(self.errors)]
                    (self.acked if packet.type is PacketType.JOB_CREATED else self.errors).append(unique)
                    if len(self.acked) == self.kill_at:
                        self.on_ack()
        except OSError:
            pass
        finally:
            self.done.set()

    def send(self, count: int) -> None:
        first = len(self.sent)
        uniques = [self.prefix + b"%d" % n for n in range(first, first + count)]
        self.sent.extend(uniques)
        self.sock.sendall(b"".join(encode(PacketType.SUBMIT_JOB_BG, [b"storm", u, b"payload " + u]) for u in uniques))

    def close(self) -> None:
        self.sock.close()
        self.done.wait(10)


def drain(port: int, function: bytes, idle: float = 1.5) -> list[bytes]:
    """Run every queued job of ``function`` with a raw GRAB_JOB_UNIQ worker; returns the unique keys run."""
    ran: list[bytes] = []
    decoder = Decoder()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = encode(PacketType.CAN_DO, [function])
        last = time.monotonic()
        while time.monotonic() - last < idle:
            sock.sendall(pending + encode(PacketType.GRAB_JOB_UNIQ))  # one write: no Nagle stall per job
            pending = b""
            reply = None
            while reply is None:
                for packet in decoder.feed(sock.recv(65536)):
                    assert isinstance(packet, Packet)
                    reply = packet
            if reply.type is PacketType.NO_JOB:
                time.sleep(0.05)
                continue
            handle, _, unique, _ = reply.args
            ran.append(unique)
            pending = encode(PacketType.WORK_COMPLETE, [handle, b"ok"])
            last = time.monotonic()
    return ran


def submit_one(port: int, ptype: PacketType, *args: bytes) -> Packet:
    decoder = Decoder()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode(ptype, list(args)))
        while True:
            for packet in decoder.feed(sock.recv(65536)):
                assert isinstance(packet, Packet)
                return packet


def test_kill_9_mid_storm_loses_no_acknowledged_job(queue_url: str) -> None:
    server = gearworks_process("-q", queue_url)
    try:
        server.start()
        storm = Storm(server.port)
        deadline = time.monotonic() + 30
        while len(storm.acked) < 3000 and time.monotonic() < deadline:
            storm.send(500)
            time.sleep(0.01)
        # Kill the server the instant the first acknowledgement of a large final batch arrives: a server that
        # acknowledged before its write was safe would lose the rest of that batch's acknowledged jobs.
        killed = threading.Event()
        storm.kill_at = len(storm.acked) + 1

        def kill_now() -> None:
            os.kill(server.pid, signal.SIGKILL)
            killed.set()

        storm.on_ack = kill_now
        storm.send(5000)
        assert killed.wait(30), "no acknowledgement of the final batch"
        server.kill()
        storm.close()
        acknowledged = set(storm.acked)
        assert len(acknowledged) >= 3000
        server.start()
        ran = drain(server.port, b"storm")
        lost = acknowledged - set(ran)
        assert not lost, f"{len(lost)} acknowledged jobs lost, e.g. {sorted(lost)[:5]}"
        assert set(ran) <= set(storm.sent)
    finally:
        server.close()


def test_unique_keys_coalesce_and_epoch_jobs_wait_after_a_restart(queue_url: str) -> None:
    server = gearworks_process("-q", queue_url)
    try:
        server.start()
        first = submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"uq", b"same", b"one")
        due = int(time.time()) + 8  # room for a restart and a drain under load before it is due
        submit_one(server.port, PacketType.SUBMIT_JOB_EPOCH, b"ep", b"later", b"%d" % due, b"x")
        server.kill()
        server.start()
        again = submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"uq", b"same", b"two")
        assert again == first  # same handle: coalesced onto the replayed job
        assert drain(server.port, b"uq") == [b"same"]
        assert time.time() < due - 1
        assert drain(server.port, b"ep", idle=0.5) == []  # not due yet
        time.sleep(max(0.0, due - time.time()))
        assert drain(server.port, b"ep", idle=2) == [b"later"]
    finally:
        server.close()


def test_a_restored_epoch_job_comes_due_with_no_connection_open(tmp_path: Path) -> None:
    server = gearworks_process("-q", f"sqlite:///{tmp_path / 'queue.db'}")
    try:
        server.start()
        due = int(time.time()) + 5  # room for the restart
        submit_one(server.port, PacketType.SUBMIT_JOB_EPOCH, b"ep", b"", b"%d" % due, b"x")
        server.kill()
        server.start()
        assert time.time() < due
        time.sleep(due + 0.5 - time.time())  # nothing talks to the server meanwhile
        # CAN_DO and GRAB_JOB in one batch: the job is assigned only if the server's timer released it on time.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(encode(PacketType.CAN_DO, [b"ep"]) + encode(PacketType.GRAB_JOB))
            decoder = Decoder()
            replies: list[Packet | bytes] = []
            while not replies:
                replies.extend(decoder.feed(sock.recv(65536)))
        assert replies == [Packet(PacketType.JOB_ASSIGN, (b"H:vm:1", b"ep", b"x"), RES)]
    finally:
        server.close()


def written_barrier(port: int) -> None:
    """Submit a background job to ``barrier`` and wait for JOB_CREATED: batches are written in order, so every
    change the server made before it is safe in the queue too."""
    assert submit_one(port, PacketType.SUBMIT_JOB_BG, b"barrier", b"", b"").type is PacketType.JOB_CREATED


def wait_for_dead_letters(admin: Admin, count: int) -> list[DeadLetter]:
    """The dead letters once there are ``count`` (the server sees a worker's disconnect a moment after it)."""
    deadline = time.monotonic() + 5
    while len(letters := admin.dead_letters()) != count and time.monotonic() < deadline:
        time.sleep(0.02)
    return letters


def test_a_job_whose_workers_keep_dying_is_a_dead_letter_that_survives_kill_9(queue_url: str) -> None:
    server = gearworks_process("-j", "2", "-q", queue_url)
    try:
        server.start()
        created = submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"doomed", b"dl", b"payload")
        handle = created.args[0]
        assert [abandon(server.port, b"doomed") for _ in range(2)] == [handle, handle]
        with Admin(f"127.0.0.1:{server.port}") as admin:
            assert wait_for_dead_letters(admin, 1) == [DeadLetter(handle, b"doomed", b"dl", 2)]
        written_barrier(server.port)
        server.kill()
        server.start()
        with Admin(f"127.0.0.1:{server.port}") as admin:
            assert admin.dead_letters() == [DeadLetter(handle, b"doomed", b"dl", 2)]
            assert [row.function for row in admin.status()] == [b"barrier"]  # buried: not queued
            assert admin.requeue_dead() == 1
            assert admin.dead_letters() == []
        assert drain(server.port, b"doomed") == [b"dl"]
        written_barrier(server.port)
        server.kill()
        server.start()  # the requeue and the run were written too: nothing comes back
        with Admin(f"127.0.0.1:{server.port}") as admin:
            assert admin.dead_letters() == []
            assert [(row.function, row.total) for row in admin.status()] == [(b"barrier", 2)]
    finally:
        server.close()


def test_redis_going_down_gives_clients_errors_and_loses_nothing_acknowledged(redis_server: ServerProcess) -> None:
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "flushall"], check=True, capture_output=True)
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    server = gearworks_process("-q", url)
    try:
        server.start()
        acked = [submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"rd", b"a%d" % n, b"x") for n in range(20)]
        assert all(p.type is PacketType.JOB_CREATED for p in acked)
        redis_server.stop()
        refused = submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"rd", b"while-down", b"x")
        assert refused.type is PacketType.ERROR
        assert refused.args[0] == b"QUEUE_ERROR"
        redis_server.start()
        server.kill()
        server.start()
        assert sorted(drain(server.port, b"rd")) == sorted(b"a%d" % n for n in range(20))
    finally:
        server.close()


def test_a_stalled_backend_holds_acknowledgements_until_the_write_is_safe(postgres_url: str) -> None:
    import psycopg

    server = gearworks_process("-q", postgres_url)
    try:
        server.start()
        submit_one(server.port, PacketType.SUBMIT_JOB_BG, b"slow", b"warm", b"x")  # creates the table
        with psycopg.connect(postgres_url) as locker:
            locker.execute("LOCK TABLE gearworks_jobs IN ACCESS EXCLUSIVE MODE")  # writes now wait
            storm = Storm(server.port)
            storm.send(200)
            time.sleep(1.0)
            assert storm.acked == []  # nothing acknowledged while the write cannot complete
            locker.rollback()  # release the lock
        deadline = time.monotonic() + 20
        while len(storm.acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(storm.acked) == 200
        storm.close()
    finally:
        server.close()
        _drop_table(postgres_url)
