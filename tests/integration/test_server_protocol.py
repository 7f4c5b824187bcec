"""gearworks' server as a subprocess, driven over raw sockets: every request, timers, and bad input."""

from __future__ import annotations

import struct
import time

import pytest

from gearworks.protocol import REQ, RES, Packet, PacketType, encode
from tests.conftest import ServerFactory
from tests.integration.server_wire import Wire, abandon
from tests.servers import ServerProcess

T = PacketType


def pkt(ptype: PacketType, *args: bytes) -> Packet:
    return Packet(ptype, args, RES)


def test_foreground_job_round_trip_with_sleeping_worker(gearworks_server: ServerProcess) -> None:
    port = gearworks_server.port
    with Wire(port) as worker, Wire(port) as client:
        worker.send(T.CAN_DO, b"reverse")
        assert worker.request(T.GRAB_JOB) == pkt(T.NO_JOB)
        worker.send(T.PRE_SLEEP)
        assert worker.silent(0.1)
        handle = client.request(T.SUBMIT_JOB, b"reverse", b"", b"test").args[0]
        assert worker.recv() == [pkt(T.NOOP)]
        assert worker.request(T.GRAB_JOB) == pkt(T.JOB_ASSIGN, handle, b"reverse", b"test")
        worker.send(T.WORK_STATUS, handle, b"1", b"4")
        worker.send(T.WORK_DATA, handle, b"par\0tial")
        worker.send(T.WORK_WARNING, handle, b"warn")
        assert client.recv(3) == [
            pkt(T.WORK_STATUS, handle, b"1", b"4"),
            pkt(T.WORK_DATA, handle, b"par\0tial"),
            pkt(T.WORK_WARNING, handle, b"warn"),
        ]
        assert client.request(T.GET_STATUS, handle) == pkt(T.STATUS_RES, handle, b"1", b"1", b"1", b"4")
        worker.send(T.WORK_COMPLETE, handle, b"tset")
        assert client.recv() == [pkt(T.WORK_COMPLETE, handle, b"tset")]
        assert client.request(T.GET_STATUS, handle) == pkt(T.STATUS_RES, handle, b"0", b"0", b"0", b"0")


def test_coalesced_clients_all_receive_results(gearworks_server: ServerProcess) -> None:
    port = gearworks_server.port
    with Wire(port) as c1, Wire(port) as c2, Wire(port) as worker:
        h1 = c1.request(T.SUBMIT_JOB, b"f", b"same", b"FIRST").args[0]
        h2 = c2.request(T.SUBMIT_JOB_HIGH, b"f", b"same", b"SECOND").args[0]
        assert h1 == h2
        worker.send(T.CAN_DO, b"f")
        assert worker.request(T.GRAB_JOB_UNIQ) == pkt(T.JOB_ASSIGN_UNIQ, h1, b"f", b"same", b"FIRST")
        worker.send(T.WORK_COMPLETE, h1, b"r")
        assert c1.recv() == [pkt(T.WORK_COMPLETE, h1, b"r")]
        assert c2.recv() == [pkt(T.WORK_COMPLETE, h1, b"r")]


def test_worker_disconnect_requeues_job_for_the_next_worker(gearworks_server: ServerProcess) -> None:
    port = gearworks_server.port
    with Wire(port) as client, Wire(port) as second:
        handle = client.request(T.SUBMIT_JOB, b"f", b"", b"A").args[0]
        with Wire(port) as first:
            first.send(T.CAN_DO, b"f")
            assert first.request(T.GRAB_JOB).type is T.JOB_ASSIGN
        second.send(T.CAN_DO, b"f")
        second.send(T.PRE_SLEEP)
        assert second.recv() == [pkt(T.NOOP)]
        assert second.request(T.GRAB_JOB) == pkt(T.JOB_ASSIGN, handle, b"f", b"A")
        second.send(T.WORK_COMPLETE, handle, b"ok")
        assert client.recv() == [pkt(T.WORK_COMPLETE, handle, b"ok")]


def test_job_retries_fail_the_client(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory("-j", "2", "--job-handle-prefix", "myprefix")
    with Wire(server.port) as client:
        assert client.request(T.SUBMIT_JOB, b"f", b"", b"A") == pkt(T.JOB_CREATED, b"myprefix:1")
        for _ in range(2):
            with Wire(server.port) as worker:
                worker.send(T.CAN_DO, b"f")
                assert worker.request(T.GRAB_JOB).type is T.JOB_ASSIGN
        assert client.recv() == [pkt(T.WORK_FAIL, b"myprefix:1")]


def test_can_do_timeout_is_seconds_and_fails_the_job(gearworks_server: ServerProcess) -> None:
    port = gearworks_server.port
    with Wire(port) as client, Wire(port) as worker:
        handle = client.request(T.SUBMIT_JOB, b"slow", b"", b"x").args[0]
        worker.send(T.CAN_DO_TIMEOUT, b"slow", b"1")
        assert worker.request(T.GRAB_JOB).type is T.JOB_ASSIGN
        started = time.monotonic()
        assert client.silent(0.6)
        assert client.recv() == [pkt(T.WORK_FAIL, handle)]
        assert 0.9 <= time.monotonic() - started < 3.0
        assert worker.request(T.WORK_COMPLETE, handle, b"late").args[0] == b"JOB_NOT_FOUND"
        assert client.silent(0.1)


def test_epoch_job_wakes_sleeping_worker_when_due(gearworks_server: ServerProcess) -> None:
    port = gearworks_server.port
    with Wire(port) as client, Wire(port) as worker:
        worker.send(T.CAN_DO, b"ep")
        worker.send(T.PRE_SLEEP)
        when = str(int(time.time()) + 2).encode()
        handle = client.request(T.SUBMIT_JOB_EPOCH, b"ep", b"e1", when, b"later").args[0]
        assert client.request(T.GET_STATUS, handle) == pkt(T.STATUS_RES, handle, b"1", b"0", b"0", b"0")
        assert worker.silent(0.5)
        worker.timeout = 5
        assert worker.recv() == [pkt(T.NOOP)]
        assert time.time() >= int(when)
        assert worker.request(T.GRAB_JOB) == pkt(T.JOB_ASSIGN, handle, b"ep", b"later")


def test_exceptions_option_and_server_flag(gearworks_server_factory: ServerFactory) -> None:
    for options, expect in (((), T.WORK_FAIL), (("--exceptions",), T.WORK_EXCEPTION)):
        server = gearworks_server_factory(*options)
        with Wire(server.port) as client, Wire(server.port) as worker:
            handle = client.request(T.SUBMIT_JOB, b"f", b"", b"x").args[0]
            worker.send(T.CAN_DO, b"f")
            worker.request(T.GRAB_JOB)
            worker.send(T.WORK_EXCEPTION, handle, b"boom")
            (reply,) = client.recv()
            assert reply.type is expect
            assert reply.args[0] == handle
        server.close()


def test_dead_letters_listed_requeued_and_purged_through_admin(gearworks_server_factory: ServerFactory) -> None:
    server = gearworks_server_factory("-j", "2", "--job-handle-prefix", "dl")
    with Wire(server.port) as client, Wire(server.port) as admin, Wire(server.port) as sleeper:
        assert client.request(T.SUBMIT_JOB_BG, b"f", b"uA", b"A") == pkt(T.JOB_CREATED, b"dl:1")
        assert client.request(T.SUBMIT_JOB_LOW_BG, b"g", b"", b"B") == pkt(T.JOB_CREATED, b"dl:2")
        assert client.request(T.SUBMIT_JOB, b"g", b"", b"fg") == pkt(T.JOB_CREATED, b"dl:3")
        assert [abandon(server.port, b"f") for _ in range(2)] == [b"dl:1", b"dl:1"]
        assert [abandon(server.port, b"g") for _ in range(4)] == [b"dl:3", b"dl:3", b"dl:2", b"dl:2"]
        assert client.recv() == [pkt(T.WORK_FAIL, b"dl:3")]  # foreground: failed, not buried
        listing = b"dl:1\tf\tuA\t2\ndl:2\tg\t\t2\n.\n"
        deadline = time.monotonic() + 5  # the server sees the last worker's disconnect a moment after it
        while admin.admin(b"dead\n") != listing and time.monotonic() < deadline:
            time.sleep(0.02)
        assert admin.admin(b"dead\n") == listing
        assert admin.admin(b"dead list\r\n") == listing
        assert admin.admin(b"status\n") == b".\n"  # no job, no worker: f and g are forgotten (README)
        assert admin.admin(b"show jobs\n") == b".\n"
        assert admin.admin(b"dead requeue dl:9\r\n") == b"ERR UNKNOWN_JOB\r\n"
        assert admin.admin(b"dead shuffle all\r\n").startswith(b"ERR INVALID_ARGUMENTS")
        sleeper.send(T.CAN_DO, b"f")
        sleeper.send(T.PRE_SLEEP)
        assert sleeper.silent(0.1)
        assert admin.admin(b"dead requeue dl:1\r\n") == b"OK 1\r\n"
        assert sleeper.recv() == [pkt(T.NOOP)]
        assert sleeper.request(T.GRAB_JOB) == pkt(T.JOB_ASSIGN, b"dl:1", b"f", b"A")
        assert admin.admin(b"dead purge all\r\n") == b"OK 1\r\n"
        assert admin.admin(b"dead\n") == b".\n"
        assert admin.admin(b"dead purge all\r\n") == b"OK 0\r\n"


def test_maxqueue_and_cancel_through_admin(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as client, Wire(gearworks_server.port) as admin:
        handle = client.request(T.SUBMIT_JOB, b"mq", b"", b"1").args[0]
        assert admin.admin(b"maxqueue mq 1\r\n") == b"OK\r\n"
        assert client.request(T.SUBMIT_JOB_BG, b"mq", b"", b"2") == pkt(T.ERROR, b"QUEUE_ERROR", b"Job queue is full")
        assert admin.admin(b"cancel job " + handle + b"\r\n") == b"OK\r\n"
        assert client.recv() == [pkt(T.WORK_FAIL, handle)]
        assert admin.admin(b"status\n") == b"mq\t0\t0\t0\n.\n"
        assert admin.admin(b"cancel job " + handle + b"\r\n") == b"ERR UNKNOWN_JOB\r\n"
        assert client.request(T.SUBMIT_JOB_BG, b"mq", b"", b"2").type is T.JOB_CREATED


def test_perl_server_jobs_and_clients_commands(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as client, Wire(gearworks_server.port) as admin:
        client.request(T.SUBMIT_JOB_BG, b"pf", b"uq1", b"x")
        client.request(T.SUBMIT_JOB, b"pf2", b"uq2", b"y")
        assert admin.admin(b"jobs\n") == b"pf\tuq1\t-\t0\npf2\tuq2\t-\t1\n.\n"
        clients = admin.admin(b"clients\n").split(b"\n")
        assert b"\tpf2\tuq2\t-" in clients
        assert clients[-2:] == [b".", b""]


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"\0BAD" + struct.pack(">II", 16, 0), b"bad magic"),
        (REQ + struct.pack(">II", 0, 0), b"unknown packet type 0"),
        (REQ + struct.pack(">II", 43, 0), b"unknown packet type 43"),
        (REQ + struct.pack(">II", 0x80000001, 0), b"unknown packet type 2147483649"),
        (REQ + struct.pack(">II", 0xFFFFFFFF, 0), b"unknown packet type"),
        (REQ + struct.pack(">II", 7, 7) + b"reverse", b"SUBMIT_JOB needs 3 arguments"),
        (REQ + struct.pack(">II", 16, 0xFFFFFFF0), b"packet limit"),
        (b"x" * 9000, b"admin line longer"),
    ],
)
def test_bad_input_gets_an_error_after_earlier_replies_and_closes_only_that_connection(
    gearworks_server: ServerProcess, wire: bytes, error: bytes
) -> None:
    with Wire(gearworks_server.port) as bad, Wire(gearworks_server.port) as good:
        bad.send_raw(encode(T.ECHO_REQ, [b"before"]) + wire)
        assert bad.recv() == [pkt(T.ECHO_RES, b"before")]
        (reply,) = bad.recv()
        assert reply.type is T.ERROR
        assert reply.args[0] == b"INVALID_PACKET"
        assert error in reply.args[1]
        assert bad.closed_by_peer() == b""
        assert good.request(T.ECHO_REQ, b"still here") == pkt(T.ECHO_RES, b"still here")


def test_res_magic_is_answered_and_connection_kept(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as wire:
        wire.send_raw(encode(T.ECHO_REQ, [b"x"], RES))
        assert wire.recv() == [pkt(T.ERROR, b"INVALID_MAGIC", b"Request magic expected")]
        assert wire.request(T.ECHO_REQ, b"y") == pkt(T.ECHO_RES, b"y")


def test_six_word_admin_line_closes_the_connection(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as wire:
        wire.send_raw(b"a b c d e f\n")
        assert wire.closed_by_peer().startswith(b"ERR ")


def test_large_echo_and_large_job_payload(gearworks_server: ServerProcess) -> None:
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB with NULs
    with Wire(gearworks_server.port) as client, Wire(gearworks_server.port) as worker:
        assert client.request(T.ECHO_REQ, payload) == pkt(T.ECHO_RES, payload)
        handle = client.request(T.SUBMIT_JOB, b"big", b"", payload).args[0]
        worker.send(T.CAN_DO, b"big")
        assert worker.request(T.GRAB_JOB) == pkt(T.JOB_ASSIGN, handle, b"big", payload)
        worker.send(T.WORK_COMPLETE, handle, payload[::-1])
        assert client.recv() == [pkt(T.WORK_COMPLETE, handle, payload[::-1])]


def test_client_that_never_reads_does_not_grow_the_server_without_bound(gearworks_server: ServerProcess) -> None:
    """A peer pipelining echoes without reading gets paused (write back-pressure), and the server stays up."""
    with Wire(gearworks_server.port) as greedy, Wire(gearworks_server.port) as good:
        greedy.sock.setblocking(False)
        chunk = encode(T.ECHO_REQ, [b"x" * 65536]) * 16
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < 512 * 1024 * 1024:
            try:
                # Resume exactly where a partial send stopped, or the stream would be misaligned.
                sent += greedy.sock.send(chunk[sent % len(chunk) :])
            except BlockingIOError:
                time.sleep(0.01)
        # The server stopped reading long before 512 MiB were accepted.
        assert sent < 256 * 1024 * 1024
        assert good.request(T.ECHO_REQ, b"ok") == pkt(T.ECHO_RES, b"ok")
