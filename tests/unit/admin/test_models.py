"""Admin replies parsed from the exact bytes gearmand 1.1.20 and the Perl server send (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import Any

import pytest

from gearworks.admin import commands
from gearworks.admin.models import (
    ClientInfo,
    ClientJob,
    DeadLetter,
    FunctionStatus,
    JobInfo,
    PriorityStatus,
    QueuedJob,
    Rows,
    WorkerInfo,
)
from gearworks.errors import ProtocolError, ServerError
from gearworks.protocol import AdminReply, AdminReplyReader, ReplyShape


def reply_to(command: commands.AdminCommand[Any], data: bytes) -> AdminReply:
    reader = AdminReplyReader()
    reader.expect(command.shape)
    (reply,) = reader.feed(data)
    return reply


def run(command: commands.AdminCommand[Any], data: bytes) -> object:
    return command.result(reply_to(command, data), "127.0.0.1:4730")


def test_status_rows_and_raw() -> None:
    data = b"ab\t1\t0\t0\nmr\t5\t2\t3\n\t0\t0\t1\n.\n"
    rows = run(commands.status(), data)
    assert rows == [
        FunctionStatus(b"ab", 1, 0, 0),
        FunctionStatus(b"mr", 5, 2, 3),
        FunctionStatus(b"", 0, 0, 1),
    ]
    assert isinstance(rows, Rows)
    assert rows.raw == data
    assert rows[1].queued == 3


def test_perl_jobs_and_clients_rows_of_prefixed_functions() -> None:
    assert run(commands.jobs(), b"app\tpf\tuq\t-\t2\n.\n") == [QueuedJob(b"app\tpf", b"uq", None, 2)]
    assert run(commands.clients(), b"127.0.0.1:1\n\tapp\tpf\tuq\t-\n.\n") == [
        ClientInfo("127.0.0.1:1", (ClientJob(b"app\tpf", b"uq", None),))
    ]


def test_status_function_name_with_tab() -> None:
    assert run(commands.status(), b"a\tb\t1\t1\t1\n.\n") == [FunctionStatus(b"a\tb", 1, 1, 1)]


def test_prioritystatus() -> None:
    assert run(commands.prioritystatus(), b"ab\t0\t1\t0\t0\nmr\t3\t5\t2\t1\n.\n") == [
        PriorityStatus(b"ab", 0, 1, 0, 0),
        PriorityStatus(b"mr", 3, 5, 2, 1),
    ]


def test_workers_ids_and_functions() -> None:
    data = (
        b"44 127.0.0.1 order : f3 f2 f1\n38 127.0.0.1 - :\n40 127.0.0.1  :\n41 ::1 my id : x : y\n42 10.0.0.1 - : \n.\n"
    )
    assert run(commands.workers(), data) == [
        WorkerInfo(44, "127.0.0.1", b"order", (b"f3", b"f2", b"f1")),
        WorkerInfo(38, "127.0.0.1", None, ()),
        WorkerInfo(40, "127.0.0.1", b"", ()),
        WorkerInfo(41, "::1", b"my id", (b"x", b":", b"y")),
        WorkerInfo(42, "10.0.0.1", None, (b"",)),
    ]


def test_show_jobs() -> None:
    assert run(commands.show_jobs(), b"H:vm:5\t1\t0\t1\nH:vm:12\t0\t1\t0\n.\n") == [
        JobInfo(b"H:vm:5", 1, False, True),
        JobInfo(b"H:vm:12", 0, True, False),
    ]


def test_show_unique_jobs_keeps_empty_keys() -> None:
    assert run(commands.show_unique_jobs(), b"\n\nru\nplain\n.\n") == [b"", b"", b"ru", b"plain"]


def test_perl_jobs_and_clients() -> None:
    assert run(commands.jobs(), b"pf2\tuq2\t-\t1\npf\tuq1\t127.0.0.1:5\t0\n.\n") == [
        QueuedJob(b"pf2", b"uq2", None, 1),
        QueuedJob(b"pf", b"uq1", "127.0.0.1:5", 0),
    ]
    data = b"127.0.0.1:34268\n127.0.0.1:34284\n\tpf2\tuq2\t-\n127.0.0.1:40366\n.\n"
    assert run(commands.clients(), data) == [
        ClientInfo("127.0.0.1:34268", ()),
        ClientInfo("127.0.0.1:34284", (ClientJob(b"pf2", b"uq2", None),)),
        ClientInfo("127.0.0.1:40366", ()),
    ]


def test_dead_letters_of_prefixed_functions_keep_the_tab_in_the_name() -> None:
    # A client prefix makes the wire name ``myapp\tresize``: the name, not the unique key, holds the tab.
    command = commands.dead_letters()
    assert command.line == b"dead\r\n"
    assert run(command, b"H:vm:3\tresize\tu\t2\nH:vm:4\tmyapp\tresize\tu1\t3\n.\n") == [
        DeadLetter(b"H:vm:3", b"resize", b"u", 2),
        DeadLetter(b"H:vm:4", b"myapp\tresize", b"u1", 3),
    ]
    assert run(command, b".\n") == []


@pytest.mark.parametrize(
    ("command", "data", "value"),
    [
        (commands.requeue_dead(), b"OK 3\r\n", 3),
        (commands.requeue_dead("H:vm:3"), b"OK 1\r\n", 1),
        (commands.purge_dead(b"H:vm:3"), b"OK 0\r\n", 0),
        (commands.version(), b"OK 1.1.20+ds\n", "1.1.20+ds"),
        (commands.version(), b"v1.130.1\n", "v1.130.1"),
        (commands.getpid(), b"OK 11778\n", 11778),
        (commands.verbose(), b"OK INFO\n", "INFO"),
        (commands.maxqueue("mq", 2), b"OK\r\n", None),
        (commands.create_function("newfn"), b"OK\r\n", None),
        (commands.drop_function("newfn"), b"OK\r\n", None),
        (commands.cancel_job("H:vm:1"), b"OK\r\n", None),
        (commands.shutdown(graceful=True), b"OK\n", None),
    ],
)
def test_one_line_replies(command: commands.AdminCommand[object], data: bytes, value: object) -> None:
    assert command.shape is ReplyShape.LINE
    assert run(command, data) == value


@pytest.mark.parametrize(
    ("command", "data", "code", "text"),
    [
        (commands.cancel_job("H:vm:9999"), b"ERR UNKNOWN_JOB\r\n", "UNKNOWN_JOB", ""),
        (
            commands.shutdown(),
            b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n",
            "UNKNOWN_COMMAND",
            "Unknown server commandshutdown",
        ),
        (commands.show_jobs(), b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n", "UNKNOWN_SHOW_ARGUMENTS", ""),
        (commands.drop_function("nosuchfn"), b"ERR function not found\r\n", "function", "not found"),
        (commands.jobs(), b"ERR unknown_command \r\n", "unknown_command", ""),
    ],
)
def test_err_lines_raise_server_error(
    command: commands.AdminCommand[object], data: bytes, code: str, text: str
) -> None:
    with pytest.raises(ServerError) as caught:
        run(command, data)
    assert (caught.value.code, caught.value.text) == (code, text)
    assert caught.value.server == "127.0.0.1:4730"


def test_command_lines_end_in_crlf() -> None:
    assert commands.create_function("cf1").line == b"create function cf1\r\n"
    assert commands.maxqueue(b"f", (1, 2, 3)).line == b"maxqueue f 1 2 3\r\n"
    assert commands.maxqueue("f").line == b"maxqueue f\r\n"
    assert commands.show_unique_jobs().line == b"show unique jobs\r\n"
    assert commands.raw("status\n").line == b"status\r\n"
    assert commands.requeue_dead().line == b"dead requeue all\r\n"
    assert commands.purge_dead("H:vm:3").line == b"dead purge H:vm:3\r\n"


@pytest.mark.parametrize("name", ["", "two words", "line\nbreak", b"cr\r"])
def test_bad_arguments_raise_before_sending(name: str | bytes) -> None:
    with pytest.raises(ValueError, match="admin command argument"):
        commands.drop_function(name)


def test_garbage_rows_raise_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        run(commands.status(), b"f\t1\tx\t0\n.\n")
    with pytest.raises(ProtocolError):
        run(commands.workers(), b"44 127.0.0.1 nocolon\n.\n")
    with pytest.raises(ProtocolError):
        run(commands.getpid(), b"pid 1\n")
