"""Admin text commands against a board, byte for byte (PROTOCOL.md §4); no sockets."""

from __future__ import annotations

import os

import pytest

from gearworks.protocol import RES, Decoder, Packet, PacketType
from gearworks.server.admin import AdminAction, AdminCommands
from gearworks.server.board import Board
from gearworks.server.dispatch import Handler, packet_table
from gearworks.server.jobs import HandleFactory
from gearworks.server.peers import Peer

T = PacketType


@pytest.fixture
def board() -> Board:
    return Board(handles=HandleFactory(b"H:t"))


@pytest.fixture
def dispatch(board: Board) -> dict[PacketType, Handler]:
    return packet_table(board)


@pytest.fixture
def admin(board: Board) -> AdminCommands:
    return AdminCommands(board, version=b"1.1.20+test", verbose="INFO")


def ask(admin: AdminCommands, line: bytes, peer: Peer | None = None) -> bytes:
    reply, action = admin.handle(peer or Peer([]), line)
    assert action is AdminAction.NONE
    return reply


def test_status_prioritystatus_workers_show(
    board: Board, admin: AdminCommands, dispatch: dict[PacketType, Handler]
) -> None:
    client = board.connect(fd=7, address=b"127.0.0.1:5000")
    worker = board.connect(fd=8, address=b"127.0.0.1:5001")
    dispatch[T.SET_CLIENT_ID](worker, (b"order",))
    for name in (b"f1", b"f2"):
        dispatch[T.CAN_DO](worker, (name,))
    dispatch[T.SUBMIT_JOB_HIGH_BG](client, (b"f1", b"u1", b"x"))
    dispatch[T.SUBMIT_JOB](client, (b"f1", b"", b"y"))
    dispatch[T.SUBMIT_JOB_LOW](client, (b"f2", b"u3", b"z"))
    dispatch[T.GRAB_JOB](worker, ())
    assert ask(admin, b"status") == b"f1\t2\t0\t1\nf2\t1\t1\t1\n.\n"
    assert ask(admin, b"prioritystatus extra") == b"f1\t1\t1\t0\t1\nf2\t0\t0\t0\t1\n.\n"
    assert ask(admin, b"workers") == b"7 127.0.0.1 - :\n8 127.0.0.1 order : f2 f1\n.\n"
    assert ask(admin, b"show jobs") == b"H:t:1\t0\t0\t1\nH:t:2\t0\t0\t0\nH:t:3\t0\t0\t0\n.\n"
    assert ask(admin, b"SHOW UNIQUE JOBS") == b"u1\n\nu3\n.\n"
    assert ask(admin, b"jobs") == b"f1\tu1\t-\t0\nf1\t\t-\t1\nf2\tu3\t127.0.0.1:5001\t1\n.\n"
    assert ask(admin, b"clients") == (b"127.0.0.1:5000\n\tf1\t\t-\n\tf2\tu3\t127.0.0.1:5001\n127.0.0.1:5001\n.\n")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"", b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"),
        (b" status", b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"),
        (b"foo bar baz", b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"),
        (b"show", b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"),
        (b"show foo", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"show jobs extra", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"cancel job", b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"),
        (b"cancel foo bar", b"ERR UNKNOWN_ERROR\r\n"),
        (b"cancel job H:t:9", b"ERR UNKNOWN_JOB\r\n"),
        (
            b"create function",
            b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\r\n",
        ),
        (b"drop", b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n"),
        (b"drop function nosuch", b"ERR function not found\r\n"),
        (b"maxqueue", b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"),
        (b"maxqueue nosuch 3", b"OK\r\n"),
        (b"version", b"OK 1.1.20+test\n"),
        (b"verbose", b"OK INFO\n"),
        (b"getpid", b"OK %d\n" % os.getpid()),
    ],
)
def test_single_line_replies(admin: AdminCommands, line: bytes, reply: bytes) -> None:
    assert ask(admin, line) == reply


def test_create_keeps_full_name_and_drop_refuses_busy_functions(
    board: Board, admin: AdminCommands, dispatch: dict[PacketType, Handler]
) -> None:
    assert ask(admin, b"create function cf1") == b"OK\r\n"
    assert b"cf1" in board.functions
    assert ask(admin, b"drop function CF1") == b"OK\r\n"
    assert b"cf1" not in board.functions
    client = board.connect()
    dispatch[T.SUBMIT_JOB_BG](client, (b"busy", b"", b"x"))
    assert ask(admin, b"drop function busy") == b"ERR there are still connected workers or executing clients\r\n"


@pytest.mark.parametrize(
    ("line", "caps"),
    [
        (b"maxqueue f 3", (3, 3, 3)),
        (b"maxqueue f 1 2", (1, 2, 0)),
        (b"maxqueue f 1 2 3", (1, 2, 3)),
        (b"maxqueue f -1 x 4", (0, 0, 4)),
        (b"maxqueue f", None),
    ],
)
def test_maxqueue_forms(board: Board, admin: AdminCommands, line: bytes, caps: tuple[int, int, int] | None) -> None:
    board.function(b"f").maxqueue = (9, 9, 9)
    assert ask(admin, line) == b"OK\r\n"
    assert board.functions[b"f"].maxqueue == caps


def test_maxqueue_of_an_unseen_function_creates_it_capped(
    board: Board, admin: AdminCommands, dispatch: dict[PacketType, Handler]
) -> None:
    assert ask(admin, b"maxqueue nosuch 1") == b"OK\r\n"
    assert ask(admin, b"maxqueue other") == b"OK\r\n"  # lifting no cap creates nothing
    assert ask(admin, b"status") == b"nosuch\t0\t0\t0\n.\n"
    client = board.connect()
    dispatch[T.SUBMIT_JOB_BG](client, (b"nosuch", b"", b"1"))
    dispatch[T.SUBMIT_JOB_BG](client, (b"nosuch", b"", b"2"))
    replies = list(Decoder().feed(b"".join(client.take_out())))
    assert replies == [
        Packet(T.JOB_CREATED, (b"H:t:1",), RES),
        Packet(T.ERROR, (b"QUEUE_ERROR", b"Job queue is full"), RES),
    ]


def test_cancel_job_ok(board: Board, admin: AdminCommands, dispatch: dict[PacketType, Handler]) -> None:
    dispatch[T.SUBMIT_JOB_BG](board.connect(), (b"f", b"", b"x"))
    assert ask(admin, b"cancel JOB H:t:1") == b"OK\r\n"
    assert ask(admin, b"status") == b".\n"  # gearmand lists f with zeros forever; its last job gone, f is forgotten


def test_six_words_close_the_connection(admin: AdminCommands) -> None:
    reply, action = admin.handle(Peer([]), b"a b c d e f")
    assert action is AdminAction.CLOSE
    assert reply.startswith(b"ERR ")


def test_shutdown_only_from_local_peers(admin: AdminCommands) -> None:
    assert admin.handle(Peer([], local=True), b"shutdown") == (b"OK\n", AdminAction.SHUTDOWN)
    assert admin.handle(Peer([], local=True), b"SHUTDOWN graceful") == (b"OK\n", AdminAction.GRACEFUL)
    assert admin.handle(Peer([], local=False), b"shutdown") == (
        b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n",
        AdminAction.NONE,
    )


def test_dead_letter_commands(admin: AdminCommands, dispatch: dict[PacketType, Handler]) -> None:
    board = admin.board
    board.job_retries = 1
    client = board.connect()
    dispatch[T.SUBMIT_JOB_BG](client, (b"f", b"u", b"x"))
    worker = board.connect()
    dispatch[T.CAN_DO](worker, (b"f",))
    dispatch[T.GRAB_JOB](worker, ())
    board.disconnect(worker)
    assert ask(admin, b"dead") == ask(admin, b"DEAD LIST") == b"H:t:1\tf\tu\t1\n.\n"
    invalid = b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+dead\r\n"
    for line in (b"dead list x", b"dead requeue", b"dead purge a b", b"dead bury all"):
        assert ask(admin, line) == invalid
    assert ask(admin, b"dead purge H:t:2") == b"ERR UNKNOWN_JOB\r\n"
    assert ask(admin, b"dead requeue ALL") == b"OK 1\r\n"
    assert ask(admin, b"dead") == b".\n"
    assert ask(admin, b"status") == b"f\t1\t0\t0\n.\n"
