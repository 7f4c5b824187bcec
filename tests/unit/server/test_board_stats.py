"""The board's counters against known workloads in memory: what each event counts, with times passed in, and that
counting changes no gearmand admin reply."""

from __future__ import annotations

import pytest

from gearworks.protocol import PacketType
from gearworks.server.admin import AdminCommands
from gearworks.server.board import Board
from gearworks.server.jobs import HandleFactory, Priority
from gearworks.server.peers import Peer
from gearworks.server.stats import UNCOUNTED, Stats
from tests.unit.server.test_board import dispatch, received, send, worker

T = PacketType


def board(**options: object) -> Board:
    return Board(handles=HandleFactory(b"H:t"), stats=Stats(started=0.0), **options)  # type: ignore[arg-type]


def grab(b: Board, w: Peer, now: float) -> bytes:
    b.now = now
    (assign,) = send(b, w, T.GRAB_JOB)
    assert assign.type is T.JOB_ASSIGN
    return assign.args[0]


def test_a_mixed_workload_counts_each_outcome_once() -> None:
    b = board(job_retries=2)
    c = b.connect()
    b.now = 100.0
    for n in range(10):
        send(b, c, T.SUBMIT_JOB_BG, b"f", b"", b"%04d" % n)  # 4 bytes each
    send(b, c, T.SUBMIT_JOB_HIGH, b"f", b"", b"fg")
    send(b, c, T.SUBMIT_JOB_BG, b"f", b"same", b"x")
    send(b, c, T.SUBMIT_JOB_BG, b"f", b"same", b"x")  # coalesced: not a new job
    w = worker(b, b"f")
    assert grab(b, w, 100.5) == b"H:t:11"  # the high-priority foreground job first, after 0.5 s in the queue
    b.now = 100.75
    dispatch(b)[T.WORK_DATA](w, (b"H:t:11", b"partial"))
    dispatch(b)[T.WORK_COMPLETE](w, (b"H:t:11", b"result"))  # ran 0.25 s
    for handle, ptype, args in (
        (b"H:t:1", T.WORK_COMPLETE, (b"ok",)),
        (b"H:t:2", T.WORK_FAIL, ()),
        (b"H:t:3", T.WORK_EXCEPTION, (b"boom",)),
    ):
        assert grab(b, w, 101.0) == handle
        b.now = 102.0
        dispatch(b)[ptype](w, (handle, *args))
    assert b.cancel(b"H:t:10")
    received(w)
    lost = worker(b, b"f")
    assert grab(b, lost, 103.0) == b"H:t:4"
    b.disconnect(lost)  # first loss: queued again
    timed = b.connect()
    dispatch(b)[T.CAN_DO_TIMEOUT](timed, (b"f", b"1"))
    assert grab(b, timed, 104.0) == b"H:t:5"
    b.tick(105.5)

    counters = b.stats.functions[b"f"]
    assert counters.submitted == [1, 0, 0, 11, 0, 0]  # high fg, normal bg (the coalesced one not counted)
    assert (counters.completed, counters.failed, counters.exceptions) == (2, 1, 1)
    assert (counters.cancelled, counters.timed_out, counters.retried, counters.dead_lettered) == (1, 1, 1, 0)
    assert counters.bytes_in == 10 * 4 + 2 + 1
    assert counters.bytes_out == len(b"partial") + len(b"result") + len(b"ok") + len(b"boom")
    assert counters.wait.count == 6  # every hand-out
    assert counters.wait.total == pytest.approx(0.5 + 1 + 1 + 1 + 3 + 4)  # H:t:5 waited longest: 4 s
    assert counters.wait.quantile(1.0) == 10.0  # the top of its bucket, (3, 10]
    assert counters.run.count == 4  # results from a worker: complete, complete, fail, exception
    assert counters.run.total == pytest.approx(0.25 + 3 * 1.0)
    assert b.stats.connections_total == 4


def test_a_background_job_lost_job_retries_times_is_dead_lettered_and_a_foreground_one_failed() -> None:
    b = board(job_retries=1)
    c = b.connect()
    send(b, c, T.SUBMIT_JOB_BG, b"bg", b"", b"x")
    send(b, c, T.SUBMIT_JOB, b"fg", b"", b"y")
    for name in (b"bg", b"fg"):
        lost = worker(b, name)
        grab(b, lost, 1.0)
        b.disconnect(lost)
    assert b.stats.functions[b"bg"].dead_lettered == 1
    assert b.stats.functions[b"fg"].failed == 1
    assert b.stats.functions[b"fg"].run.count == 0  # no result from a worker: no run time
    assert b.requeue_dead(None) == 1
    assert b.stats.functions[b"bg"].submitted_total == 1  # a requeue is not a new submission


def test_bad_input_is_counted_by_kind() -> None:
    b = board()
    admin = AdminCommands(b, version=b"t")
    c = b.connect()
    send(b, c, T.JOB_ASSIGN, b"h", b"f", b"x")  # a response type from a client
    admin.handle(c, b"frobnicate")
    assert (b.stats.bad_input["command"], b.stats.bad_input["admin"]) == (1, 1)


def test_counting_changes_no_gearmand_admin_reply() -> None:
    b = board()
    admin = AdminCommands(b, version=b"t")
    c = b.connect()
    for priority in (T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH_BG):
        send(b, c, priority, b"f", b"", b"x")
    w = worker(b, b"f")
    grab(b, w, 1.0)
    lines = (b"status", b"prioritystatus", b"show jobs", b"workers")
    before = [admin.handle(c, line)[0] for line in lines]
    assert admin.handle(c, b"stats")[0].startswith(b"f\t1\t1\t1\t")
    assert [admin.handle(c, line)[0] for line in lines] == before
    assert before[:3] == [b"f\t2\t1\t1\n.\n", b"f\t0\t1\t0\t1\n.\n", b"H:t:1\t0\t0\t1\nH:t:2\t0\t0\t1\n.\n"]


def test_admin_stats_rows() -> None:
    b = board()
    admin = AdminCommands(b, version=b"t")
    c = b.connect()
    b.now = 10.0
    b.submit(b"tab\tname", b"", b"abc", priority=Priority.LOW, background=True)
    b.function(b"idle")
    w = worker(b, b"tab\tname")
    grab(b, w, 10.002)
    reply, _ = admin.handle(c, b"stats")
    first, second, end = reply.split(b"\n", 2)
    assert end == b".\n"
    fields = first.rsplit(b"\t", 22)
    assert fields[0] == b"tab\tname"
    assert fields[1:19] == [b"0", b"1", b"1", b"0", b"0", b"0", b"0", b"0", b"1", *[b"0"] * 7, b"3", b"0"]
    assert float(fields[19]) == pytest.approx(0.002, rel=0.5)  # interpolated inside (0.001, 0.003]
    assert fields[21:] == [b"-", b"-"]
    assert second.startswith(b"idle\t0\t0\t0\t")
    assert admin.handle(c, b"stats idle")[0] == second + b"\n.\n"
    assert admin.handle(c, b"stats nosuch")[0] == b".\n"


def test_a_name_only_registered_costs_no_counters_and_counters_outlive_the_function() -> None:
    b = board()
    w = worker(b, *(b"only-%d" % n for n in range(100)))
    assert b.stats.functions == {}
    assert all(function.counters is UNCOUNTED for function in b.functions.values())
    send(b, b.connect(), T.SUBMIT_JOB_BG, b"only-7", b"", b"x")
    assert list(b.stats.functions) == [b"only-7"]
    assert b.functions[b"only-7"].counters is b.stats.functions[b"only-7"]
    dispatch(b)[T.GRAB_JOB](w, ())
    dispatch(b)[T.WORK_COMPLETE](w, (received(w)[-1].args[0], b""))
    b.disconnect(w)
    assert b"only-7" not in b.functions  # forgotten with its last worker and job
    assert b.stats.functions[b"only-7"].completed == 1
    assert UNCOUNTED.submitted_total == UNCOUNTED.ended == 0
