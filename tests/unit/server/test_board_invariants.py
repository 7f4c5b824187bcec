"""Random sequences of requests, disconnects, cancels and clock ticks keep the board's books consistent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gearworks.protocol import PacketType
from gearworks.server.board import Board
from gearworks.server.dispatch import packet_table
from gearworks.server.jobs import HandleFactory, JobState
from gearworks.server.peers import Peer

T = PacketType
FUNCTIONS = (b"f", b"g")
UNIQUES = (b"", b"u1", b"u2", b"-")
PAYLOADS = (b"", b"a", b"b")

op = st.one_of(
    st.tuples(
        st.just("submit"),
        st.integers(0, 2),
        st.sampled_from([T.SUBMIT_JOB, T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_LOW_BG, T.SUBMIT_JOB_EPOCH]),
        st.sampled_from(FUNCTIONS),
        st.sampled_from(UNIQUES),
        st.sampled_from(PAYLOADS),
    ),
    st.tuples(st.just("can_do"), st.integers(0, 2), st.sampled_from(FUNCTIONS), st.sampled_from((b"", b"1"))),
    st.tuples(st.just("cant_do"), st.integers(0, 2), st.sampled_from((*FUNCTIONS, None))),
    st.tuples(st.just("grab"), st.integers(0, 2), st.sampled_from([T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL])),
    st.tuples(st.just("pre_sleep"), st.integers(0, 2)),
    st.tuples(
        st.just("work"),
        st.integers(0, 2),
        st.sampled_from([T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION, T.WORK_DATA, T.WORK_STATUS]),
    ),
    st.tuples(st.just("disconnect"), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(1, 30)),
    st.tuples(st.just("tick"), st.floats(0, 5)),
)


def check(board: Board) -> None:
    jobs = board.jobs
    assert sum(function.total for function in board.functions.values()) == len(jobs)
    for function in board.functions.values():
        queued = [0, 0, 0]
        for priority, queue in enumerate(function.queues):
            queued[priority] = sum(1 for job in queue if job.state is JobState.QUEUED)
        assert queued == function.counts
        assert function.running == sum(1 for job in jobs.values() if job.function is function and job.worker)
        for job in function.uniques.values():
            assert jobs[job.handle] is job
    for job in jobs.values():
        assert job.state is not JobState.GONE
        assert (job.state is JobState.RUNNING) == (job.worker is not None)
        if job.worker is not None:
            assert job in job.worker.running
            assert job.worker in board.peers
        for client in job.clients or ():
            assert client in board.peers
            assert job in client.waiting
    for peer in board.peers:
        assert all(job.worker is peer for job in peer.running)
        assert all(jobs.get(job.handle) is job for job in peer.waiting)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, min_size=20, max_size=80), st.integers(0, 2), st.booleans())
def test_random_operations_keep_counts_and_indexes_consistent(
    ops: list[tuple[object, ...]], retries: int, round_robin: bool
) -> None:
    board = Board(handles=HandleFactory(b"H:t"), job_retries=retries, round_robin=round_robin)
    dispatch = packet_table(board)
    peers: list[Peer | None] = [None] * 3
    now = 1000.0

    def peer(index: int) -> Peer:
        if peers[index] is None:
            peers[index] = board.connect()
        found = peers[index]
        assert found is not None
        return found

    for kind, *rest in ops:
        board.now = now
        if kind == "submit":
            index, ptype, function, unique, payload = rest
            args = (function, unique, b"%d" % (now + 2), payload) if ptype is T.SUBMIT_JOB_EPOCH else ()
            dispatch[ptype](peer(index), args or (function, unique, payload))  # type: ignore[index,arg-type]
        elif kind == "can_do":
            index, function, timeout = rest
            if timeout:
                dispatch[T.CAN_DO_TIMEOUT](peer(index), (function, timeout))  # type: ignore[arg-type]
            else:
                dispatch[T.CAN_DO](peer(index), (function,))  # type: ignore[arg-type]
        elif kind == "cant_do":
            index, function = rest
            target = peer(index)  # type: ignore[arg-type]
            if function is None:
                dispatch[T.RESET_ABILITIES](target, ())
            else:
                dispatch[T.CANT_DO](target, (function,))  # type: ignore[arg-type]
        elif kind == "grab":
            index, ptype = rest
            dispatch[ptype](peer(index), ())  # type: ignore[index,arg-type]
        elif kind == "pre_sleep":
            dispatch[T.PRE_SLEEP](peer(rest[0]), ())  # type: ignore[arg-type]
        elif kind == "work":
            index, ptype = rest
            worker = peer(index)  # type: ignore[arg-type]
            for job in list(worker.running)[:1]:
                args = (job.handle, b"1", b"2") if ptype is T.WORK_STATUS else (job.handle, b"r")
                dispatch[ptype](worker, args[:1] if ptype is T.WORK_FAIL else args)  # type: ignore[index]
        elif kind == "disconnect":
            index = rest[0]
            if peers[index] is not None:  # type: ignore[index]
                board.disconnect(peers[index])  # type: ignore[arg-type,index]
                peers[index] = None  # type: ignore[index]
        elif kind == "cancel":
            board.cancel(b"H:t:%d" % rest[0])  # type: ignore[str-bytes-safe]
        else:
            now += rest[0]  # type: ignore[operator]
            board.tick(now)
        for each in board.take_ready():
            each.take_out()
        check(board)
