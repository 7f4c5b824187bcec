"""The same conversation with C gearmand 1.1.20 and with gearworks' server: every reply byte for byte.

Only what depends on the process is normalised: the pid, the version string, connection fds, and the order of
lines inside list replies (gearmand prints its hash order).
"""

from __future__ import annotations

import re

from gearworks import __version__
from gearworks.protocol import RES, PacketType, encode
from tests.conftest import ServerFactory
from tests.integration.server_wire import Wire
from tests.servers import ServerProcess

T = PacketType
FAR_FUTURE = b"4102444800"  # 2100-01-01


def barrier(wire: Wire) -> None:
    """Make sure everything sent on ``wire`` so far was processed (gearmand runs several I/O threads)."""
    assert wire.request(T.ECHO_REQ, b"sync").args == (b"sync",)


def conversation(port: int) -> list[tuple[str, bytes]]:
    """Run the scripted conversation; returns (step, raw reply bytes) in order."""
    out: list[tuple[str, bytes]] = []
    with Wire(port) as worker, Wire(port) as client, Wire(port) as admin:

        def packets(wire: Wire, ptype: PacketType, *args: bytes, count: int = 1) -> None:
            wire.send(ptype, *args)
            out.append((f"{ptype.name} {args!r}", wire.recv_raw_packets(count)))

        def raw(wire: Wire, data: bytes) -> None:
            wire.send_raw(data)
            out.append((repr(data), wire.recv_raw_packets(1)))

        def ask(line: bytes) -> None:
            out.append((repr(line), admin.admin(line)))

        worker.send(T.SET_CLIENT_ID, b"wid")
        for name in (b"b", b"a"):  # gearmand lists and counts a duplicate CAN_DO twice; gearworks once (README)
            worker.send(T.CAN_DO, name)
        barrier(worker)
        packets(client, T.SUBMIT_JOB_BG, b"a", b"u1", b"x")
        packets(client, T.SUBMIT_JOB_BG, b"a", b"u1", b"dup")
        packets(client, T.SUBMIT_JOB_HIGH_BG, b"a", b"", b"y")
        packets(client, T.SUBMIT_JOB_LOW_BG, b"b", b"u2", b"z")
        packets(client, T.SUBMIT_REDUCE_JOB_BACKGROUND, b"b", b"u3", b"red", b"agg", b"DATA")
        packets(client, T.SUBMIT_JOB_EPOCH, b"b", b"e1", FAR_FUTURE, b"later")
        packets(client, T.SUBMIT_JOB_BG, b"a", b"", b"")
        packets(client, T.SUBMIT_JOB_BG, b"a", b"u" * 65, b"")
        packets(client, T.GET_STATUS, b"H:vm:1")
        packets(client, T.GET_STATUS_UNIQUE, b"u1")
        packets(client, T.GET_STATUS, b"H:vm:999")
        packets(client, T.GET_STATUS_UNIQUE, b"")
        packets(client, T.OPTION_REQ, b"EXCEPTIONS")
        packets(client, T.OPTION_REQ, b"exceptions\0")
        packets(client, T.OPTION_REQ, b"foo")
        packets(client, T.ECHO_REQ, b"")
        packets(client, T.ECHO_REQ, b"a\0b\0")
        packets(client, T.ALL_YOURS)
        packets(client, T.NOOP)
        packets(client, T.UNUSED)
        packets(client, T.SUBMIT_JOB_SCHED, b"f", b"", b"1", b"2", b"3", b"4", b"5", b"x")
        raw(client, encode(T.ECHO_REQ, [b"x"], RES))
        packets(worker, T.GRAB_JOB_ALL)
        worker.send(T.WORK_STATUS, b"H:vm:2", b"1", b"4")
        barrier(worker)
        packets(client, T.GET_STATUS, b"H:vm:2")
        packets(worker, T.WORK_COMPLETE, b"H:vm:999", b"r")
        packets(worker, T.WORK_DATA, b"H:vm:999", b"r")
        packets(worker, T.WORK_WARNING, b"H:vm:999", b"r")
        packets(worker, T.WORK_EXCEPTION, b"H:vm:999", b"r")
        packets(worker, T.WORK_STATUS, b"H:vm:999", b"1", b"2")
        packets(worker, T.WORK_FAIL, b"H:vm:999")
        packets(worker, T.WORK_FAIL, b"H" * 64)
        packets(worker, T.GRAB_JOB_UNIQ)
        packets(worker, T.GRAB_JOB)
        worker.send(T.WORK_COMPLETE, b"H:vm:2", b"done")
        barrier(worker)
        packets(client, T.GET_STATUS, b"H:vm:2")
        for line in (
            b"status\n",
            b"prioritystatus\r\n",
            b"workers\n",
            b"show jobs\n",
            b"show unique jobs\r\n",
            b"SHOW JOBS\n",
            b"status x y\n",
            b"version\n",
            b"verbose\n",
            b"getpid\n",
            b"maxqueue a 1\n",
            b"maxqueue\n",
            b"create function newfn\r\n",
            b"status\n",
            b"drop function NEWFN\r\n",
            b"drop function nosuch\r\n",
            b"drop function a\r\n",
            b"drop function\n",
            b"create foo bar\n",
            b"cancel job H:vm:9999\r\n",
            b"cancel job\n",
            b"cancel foo bar\n",
            b"show foo\n",
            b"show\n",
            b"show jobs extra\n",
            b"foo bar baz\n",
            b"\n",
            b" status\n",
        ):
            ask(line)
        packets(client, T.SUBMIT_JOB_BG, b"a", b"", b"q")
        packets(client, T.SUBMIT_JOB_BG, b"a", b"u1", b"joins-despite-full")
        ask(b"maxqueue a\n")
        packets(client, T.SUBMIT_JOB_BG, b"a", b"", b"q")
        ask(b"status\n")
        ask(b"maxqueue nosuch 5\n")  # last: here it creates the function, gearmand ignores it (README, Compatibility)
    return out


_LINE_SORTED = re.compile(rb"^(?:[^\n]*\n)*\.\n$")


def normalise(reply: bytes) -> bytes:
    reply = re.sub(rb"^OK \d+\n$", b"OK PID\n", reply)
    reply = re.sub(rb"^OK 1\.1\.20\S*\n$", b"OK VERSION\n", reply)
    reply = re.sub(rb"(?m)^\d+ (127\.0\.0\.1 )", rb"FD \1", reply)
    if reply.endswith(b".\n") and _LINE_SORTED.match(reply):
        lines = reply[:-2].split(b"\n")[:-1]
        reply = b"\n".join(sorted(lines)) + (b"\n" if lines else b"") + b".\n"
    return reply


def test_conversation_matches_gearmand_byte_for_byte(
    gearmand_factory: ServerFactory, gearworks_server_factory: ServerFactory
) -> None:
    ours = conversation(gearworks_server_factory("--verbose", "INFO").port)
    theirs = conversation(gearmand_factory().port)
    assert len(ours) == len(theirs)
    mismatches = [
        (step, their, our)
        for (step, our), (_, their) in zip(ours, theirs, strict=True)
        if normalise(our) != normalise(their)
    ]
    assert mismatches == []


def test_pipelined_admin_lines_answered_in_order(gearworks_server: ServerProcess) -> None:
    with Wire(gearworks_server.port) as wire:
        wire.send_raw(b"ver")
        assert wire.silent(0.1)  # a partial line waits for the rest
        wire.send_raw(b"sion\nstatus\ngetpid\n")
        data = b""
        while not data.endswith(b"OK %d\n" % gearworks_server.pid):
            chunk = wire.sock.recv(65536)
            assert chunk
            data += chunk
        assert data == b"OK 1.1.20+gearworks.%s\n.\nOK %d\n" % (__version__.encode(), gearworks_server.pid)
