"""The worker link state machine: the transition table itself, and the packets that walk a link through it."""

from __future__ import annotations

import pytest

from gearworks.connection import ServerAddress
from gearworks.protocol import RES, Packet, PacketType, encode
from gearworks.worker.job import WorkerJob
from gearworks.worker.session import LinkEvent, LinkState, Outcome, Owed, WorkerSession, next_state

T = PacketType
S, E = LinkState, LinkEvent

# Every (state, event) pair that moves a link; all others leave it where it is.
MOVES = {
    (S.DISCONNECTED, E.CONNECT): S.AWAKE,
    (S.AWAKE, E.NO_JOB): S.EXHAUSTED,
    (S.EXHAUSTED, E.NOOP): S.AWAKE,
    (S.EXHAUSTED, E.SLEEP): S.ASLEEP,
    (S.ASLEEP, E.NOOP): S.AWAKE,
    (S.ASLEEP, E.POLL): S.AWAKE,
    (S.AWAKE, E.LOSE): S.DISCONNECTED,
    (S.EXHAUSTED, E.LOSE): S.DISCONNECTED,
    (S.ASLEEP, E.LOSE): S.DISCONNECTED,
}


@pytest.mark.parametrize("state", list(LinkState))
@pytest.mark.parametrize("event", list(LinkEvent))
def test_transition_table_moves_only_the_listed_pairs(state: LinkState, event: LinkEvent) -> None:
    assert next_state(state, event) is MOVES.get((state, event), state)


def res(ptype: PacketType, *args: bytes) -> Packet:
    return Packet(ptype, args, RES)


def started(concurrency: int = 2) -> WorkerSession:
    session = WorkerSession([ServerAddress("127.0.0.1", 4730)], concurrency=concurrency, exceptions=False)
    session.register("f", lambda job: b"")
    session.start()
    return session


def test_a_link_walks_awake_exhausted_asleep_and_wakes_on_noop() -> None:
    session = started()
    link = session.links[0]
    assert link.state is S.DISCONNECTED
    session.connected(link)
    assert (link.state, list(link.replies)) == (S.AWAKE, [Owed.GRAB, Owed.GRAB])
    session.receive(link, res(T.NO_JOB))
    assert (link.state, link.outstanding) == (S.EXHAUSTED, 1)
    session.receive(link, res(T.NOOP))  # work arrived before the last GRAB was answered: grab the free slot
    assert (link.state, link.outstanding) == (S.AWAKE, 2)
    session.receive(link, res(T.NO_JOB))
    assert (link.state, link.outstanding) == (S.EXHAUSTED, 1)
    session.receive(link, res(T.NO_JOB))
    assert (link.state, link.outstanding, link.out[-1]) == (S.ASLEEP, 0, encode(T.PRE_SLEEP))
    session.receive(link, res(T.NOOP))
    assert (link.state, link.outstanding) == (S.AWAKE, 2)


def test_losing_the_connection_disconnects_the_link_from_every_state() -> None:
    for packets in ([], [T.NO_JOB], [T.NO_JOB, T.NO_JOB]):
        session = started()
        link = session.links[0]
        session.connected(link)
        for ptype in packets:
            session.receive(link, res(ptype))
        session.disconnected(link, now=1.0)
        assert (link.state, link.outstanding, list(link.replies), link.out) == (S.DISCONNECTED, 0, [], [])
        assert session.reserved == 0


def test_an_option_is_owed_its_reply_and_work_packets_owe_maybe() -> None:
    session = WorkerSession([ServerAddress("127.0.0.1", 4730)])
    session.register("f", lambda job: b"")
    session.start()
    link = session.links[0]
    session.connected(link)
    assert list(link.replies) == [Owed.OPTION, Owed.GRAB]
    session.receive(link, res(T.OPTION_RES, b"exceptions"))
    assert link.exceptions
    job = session.receive(link, res(T.JOB_ASSIGN, b"H:1", b"f", b""))
    assert isinstance(job, WorkerJob)
    job.data(b"part")
    assert list(link.replies) == [Owed.MAYBE]
    session.job_returned(job, Outcome(error=ValueError("x")))  # WORK_EXCEPTION, WORK_FAIL, the next GRAB
    assert list(link.replies) == [Owed.MAYBE, Owed.MAYBE, Owed.MAYBE, Owed.GRAB]
