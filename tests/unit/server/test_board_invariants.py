"""Random sequences of requests, disconnects, cancels and clock ticks keep the board's books consistent."""

from __future__ import annotations

from typing import NamedTuple

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


class Submit(NamedTuple):
    peer: int
    ptype: PacketType
    function: bytes
    unique: bytes
    payload: bytes


class CanDo(NamedTuple):
    peer: int
    function: bytes
    timeout: bytes


class CantDo(NamedTuple):
    peer: int
    function: bytes | None


class Grab(NamedTuple):
    peer: int
    ptype: PacketType


class PreSleep(NamedTuple):
    peer: int


class Work(NamedTuple):
    peer: int
    ptype: PacketType


class Disconnect(NamedTuple):
    peer: int


class Cancel(NamedTuple):
    number: int


class Tick(NamedTuple):
    seconds: float


Op = Submit | CanDo | CantDo | Grab | PreSleep | Work | Disconnect | Cancel | Tick
PEER = st.integers(0, 2)

op: st.SearchStrategy[Op] = st.one_of(
    st.builds(
        Submit,
        PEER,
        st.sampled_from([T.SUBMIT_JOB, T.SUBMIT_JOB_BG, T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_LOW_BG, T.SUBMIT_JOB_EPOCH]),
        st.sampled_from(FUNCTIONS),
        st.sampled_from(UNIQUES),
        st.sampled_from(PAYLOADS),
    ),
    st.builds(CanDo, PEER, st.sampled_from(FUNCTIONS), st.sampled_from((b"", b"1"))),
    st.builds(CantDo, PEER, st.sampled_from((*FUNCTIONS, None))),
    st.builds(Grab, PEER, st.sampled_from([T.GRAB_JOB, T.GRAB_JOB_UNIQ, T.GRAB_JOB_ALL])),
    st.builds(PreSleep, PEER),
    st.builds(
        Work, PEER, st.sampled_from([T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION, T.WORK_DATA, T.WORK_STATUS])
    ),
    st.builds(Disconnect, PEER),
    st.builds(Cancel, st.integers(1, 30)),
    st.builds(Tick, st.floats(0, 5)),
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
        for job in (function.uniques or {}).values():
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
def test_random_operations_keep_counts_and_indexes_consistent(ops: list[Op], retries: int, round_robin: bool) -> None:
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

    for each_op in ops:
        board.now = now
        match each_op:
            case Submit(index, ptype, function, unique, payload):
                if ptype is T.SUBMIT_JOB_EPOCH:
                    dispatch[ptype](peer(index), (function, unique, b"%d" % (now + 2), payload))
                else:
                    dispatch[ptype](peer(index), (function, unique, payload))
            case CanDo(index, function, timeout):
                if timeout:
                    dispatch[T.CAN_DO_TIMEOUT](peer(index), (function, timeout))
                else:
                    dispatch[T.CAN_DO](peer(index), (function,))
            case CantDo(index, None):
                dispatch[T.RESET_ABILITIES](peer(index), ())
            case CantDo(index, bytes() as function):
                dispatch[T.CANT_DO](peer(index), (function,))
            case Grab(index, ptype):
                dispatch[ptype](peer(index), ())
            case PreSleep(index):
                dispatch[T.PRE_SLEEP](peer(index), ())
            case Work(index, ptype):
                worker = peer(index)
                for job in list(worker.running)[:1]:
                    args = (job.handle, b"1", b"2") if ptype is T.WORK_STATUS else (job.handle, b"r")
                    dispatch[ptype](worker, args[:1] if ptype is T.WORK_FAIL else args)
            case Disconnect(index):
                gone = peers[index]
                if gone is not None:
                    board.disconnect(gone)
                    peers[index] = None
            case Cancel(number):
                board.cancel(b"H:t:%d" % number)
            case Tick(seconds):
                now += seconds
                board.tick(now)
        for each in board.take_ready():
            each.take_out()
        check(board)
